/**
 * Cluster mode's in-pod probes (issue 6): what the API alone cannot tell.
 *
 * Design: one small probe pod per Ready node (busybox by default, `sleep 300`, pinned
 * with `nodeName`, labelled app.kubernetes.io/name=weave-doctor-probe plus a run label),
 * in kube-system unless told otherwise (`createNamespace` makes and removes its own).
 * We wait, bounded, until each is Running with a podIP, then exec through the API
 * (websocket, channel.k8s.io) from each probe: `ping -c1 -W2` to every other probe,
 * `nc -z -w2 <kubernetes ClusterIP> 443`, and `nslookup kubernetes.default`. Everything
 * seen becomes `ProbeFacts`; `checkProbes` (pure) turns them into checks. Probe pods
 * (and the namespace, if ours) are always deleted by name in a `finally`; what could
 * not be deleted is reported, never left in silence.
 */
import { Writable } from "node:stream";
import {
  CoreV1Api,
  Exec,
  type KubeConfig,
  type V1Node,
  type V1Pod,
  type V1Service,
  type V1Status,
} from "@kubernetes/client-node";
import { isLab } from "../../cluster-facts.ts";
import { describeError } from "../../k8s/node-peers.ts";
import { PROBE_APP, PROBE_LABEL, type ProbeFacts, type ProbePod } from "../checks-probes.ts";
import { oneLine } from "../parse.ts";
import { plural } from "../result.ts";

export const DEFAULT_PROBE_IMAGE = "busybox:1.36";

export type ProbeOptions = {
  namespace?: string;
  /** Create `namespace` first and delete it after (it must not exist yet). */
  createNamespace?: boolean;
  image?: string;
  /** How long pods may take to be Running with an address (default 60 s). */
  timeoutMs?: number;
  /** Per exec (default 15 s). */
  execTimeoutMs?: number;
  progress?(line: string): void;
};

export type ExecResult = { ok: boolean; code?: number; output: string };

const nodeReady = (n: V1Node) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

function exitCode(s: V1Status): number | undefined {
  if (s.status === "Success") return 0;
  const c = s.details?.causes?.find((x) => x.reason === "ExitCode")?.message;
  return c !== undefined && /^\d+$/.test(c) ? Number(c) : undefined;
}

/** Run `command` in a pod's container through the exec API; resolves (never rejects) with its exit and output. */
export function podExec(
  kc: KubeConfig,
  namespace: string,
  pod: string,
  container: string,
  command: string[],
  timeoutMs = 15_000,
): Promise<ExecResult> {
  const chunks: Buffer[] = [];
  const sink = () =>
    new Writable({
      write(c, _e, cb) {
        chunks.push(Buffer.from(c));
        cb();
      },
    });
  const text = () => Buffer.concat(chunks).toString("utf8");
  return new Promise((resolve) => {
    let done = false;
    let socket: { close(): void } | undefined;
    const finish = (r: ExecResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        socket?.close();
      } catch {
        /* already closed */
      }
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ ok: false, output: `no exit status within ${timeoutMs / 1000} s; output so far: ${text()}` }),
      timeoutMs,
    );
    new Exec(kc)
      .exec(namespace, pod, container, command, sink(), sink(), null, false, (s) => {
        const code = exitCode(s);
        // Let the last stdout chunks be written before reading them.
        setTimeout(
          () =>
            finish({ ok: code === 0, ...(code !== undefined ? { code } : {}), output: text() || (s.message ?? "") }),
          0,
        );
      })
      .then((ws) => {
        socket = ws;
        ws.onclose = () => {
          setTimeout(
            () => finish({ ok: false, output: `exec connection closed without an exit status; output: ${text()}` }),
            50,
          );
        };
      })
      .catch((e) =>
        finish({ ok: false, output: `exec failed: ${describeError(e) || String((e as Error)?.message ?? e)}` }),
      );
  });
}

function probePod(name: string, ns: string, node: string, image: string, run: string): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns, labels: { [PROBE_LABEL]: PROBE_APP, "weave-doctor-run": run } },
    spec: {
      nodeName: node,
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 0,
      automountServiceAccountToken: false,
      tolerations: [{ operator: "Exists" }],
      containers: [
        { name: "probe", image, command: ["sleep", "300"], resources: { requests: { cpu: "10m", memory: "16Mi" } } },
      ],
    },
  };
}

/** Why a pod is not Running: its phase and the first container's waiting reason. */
function podReason(p: V1Pod): string {
  const w = p.status?.containerStatuses?.[0]?.state?.waiting;
  return [
    p.status?.phase ?? "Pending",
    w?.reason && `${w.reason}${w.message ? `: ${oneLine(w.message, 100)}` : ""}`,
    !p.status?.podIP && "no podIP",
  ]
    .filter(Boolean)
    .join(", ");
}

/** Start the probe pods, run the probes, remove the pods; facts of all of it. */
export async function runProbes(
  kc: KubeConfig,
  nodes: V1Node[],
  kubernetesService: V1Service | undefined,
  o: ProbeOptions = {},
): Promise<ProbeFacts> {
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = o.namespace ?? "kube-system";
  const facts: ProbeFacts = {
    namespace,
    image: o.image ?? DEFAULT_PROBE_IMAGE,
    timeoutMs: o.timeoutMs ?? 60_000,
    pods: [],
    probes: [],
    cleanup: [],
  };
  const say = o.progress ?? (() => {});
  const run = Math.random().toString(36).slice(2, 7);
  let madeNs = false;
  try {
    if (o.createNamespace) {
      await core.createNamespace({ body: { metadata: { name: namespace, labels: { [PROBE_LABEL]: PROBE_APP } } } });
      madeNs = true;
    }
    const ready = nodes.filter(nodeReady).map((n) => n.metadata?.name ?? "?");
    say(`starting ${plural(ready.length, "probe pod")} (${facts.image}) in ${namespace}`);
    for (const [i, node] of ready.entries()) {
      const pod: ProbePod = { node, name: `weave-doctor-${run}-${i}` };
      facts.pods.push(pod);
      await core
        .createNamespacedPod({ namespace, body: probePod(pod.name, namespace, node, facts.image, run) })
        .catch((e) => {
          pod.error = `cannot create: ${describeError(e)}`;
        });
    }
    const end = Date.now() + facts.timeoutMs;
    for (;;) {
      const seen = (await core.listNamespacedPod({ namespace, labelSelector: `weave-doctor-run=${run}` })).items;
      for (const pod of facts.pods.filter((p) => !p.error)) {
        const p = seen.find((x) => x.metadata?.name === pod.name);
        Object.assign(pod, {
          phase: p ? (p.status?.phase ?? "Pending") : "gone",
          reason: p ? podReason(p) : "deleted by someone else",
        });
        if (p?.status?.phase === "Running" && p.status.podIP) pod.ip = p.status.podIP;
      }
      if (
        facts.pods.every((p) => p.error || p.ip || ["Failed", "Succeeded", "gone"].includes(p.phase ?? "")) ||
        Date.now() > end
      )
        break;
      await Bun.sleep(500);
    }
    const up = facts.pods.filter((p) => p.ip);
    say(`${up.length} of ${plural(facts.pods.length, "probe pod")} running; probing`);
    const svc = kubernetesService?.spec?.clusterIP;
    if (!svc || svc === "None") facts.serviceSkipped = "Service default/kubernetes has no ClusterIP";
    if (isLab(nodes)) {
      facts.serviceSkipped = "this is a weave lab: it runs no kube-proxy, so Service addresses lead nowhere";
      facts.dnsSkipped = "this is a weave lab: it runs no cluster DNS";
    }
    const exec = (p: ProbePod, cmd: string[]) => podExec(kc, namespace, p.name, "probe", cmd, o.execTimeoutMs);
    await Promise.all(
      up.map(async (a) => {
        for (const b of up) {
          if (b === a) continue;
          const r = await exec(a, ["ping", "-c1", "-W2", b.ip!]);
          facts.probes.push({ kind: "ping", from: a.node, to: b.node, target: b.ip!, ok: r.ok, output: r.output });
        }
        if (!facts.serviceSkipped) {
          const r = await exec(a, ["nc", "-z", "-w2", svc!, "443"]);
          facts.probes.push({
            kind: "service",
            from: a.node,
            to: "default/kubernetes",
            target: `${svc}:443`,
            ok: r.ok,
            output: r.output,
          });
        }
        if (facts.dnsSkipped) return;
        const r = await exec(a, ["nslookup", "kubernetes.default"]);
        facts.probes.push({
          kind: "dns",
          from: a.node,
          to: "cluster DNS",
          target: "kubernetes.default",
          ok: r.ok,
          output: r.output,
        });
      }),
    );
  } catch (e) {
    facts.error = describeError(e) || (e as Error).message;
  } finally {
    for (const p of facts.pods.filter((x) => !x.error)) {
      await core.deleteNamespacedPod({ name: p.name, namespace, gracePeriodSeconds: 0 }).catch((e) => {
        if ((e as { code?: number }).code !== 404)
          facts.cleanup.push(`pod ${namespace}/${p.name}: ${describeError(e)}`);
      });
    }
    if (madeNs)
      await core
        .deleteNamespace({ name: namespace })
        .catch((e) => facts.cleanup.push(`namespace ${namespace}: ${describeError(e)}`));
  }
  return facts;
}
