/**
 * Checks of a cluster from what the Kubernetes API says: the DaemonSet, one Ready agent
 * pod per node with every container ready, nodes Ready with NetworkUnavailable False,
 * pods with addresses in the range, and the range against node addresses and the
 * service range (inferred from the `kubernetes` Service as `weave install` does).
 *
 * What the API cannot tell (packets between pods, DNS, Services from a pod) needs pods
 * started on each node and the exec API; that is not done yet, and is reported as a
 * warning saying so and how to check by hand, rather than passed in silence.
 */
import type { V1ConfigMap, V1DaemonSet, V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import {
  asRange,
  contains,
  formatCidr,
  ipToNum,
  isIpv4,
  maskOf,
  overlaps,
  parseCidr,
  rangeHolds,
  type Cidr,
} from "../cidr.ts";
import { INFERRED_SERVICE_PREFIX, podState } from "../cluster-facts.ts";
import { list, plural, result } from "./result.ts";
import type { CheckResult } from "./types.ts";
import { checkClusterNpc } from "./checks-npc.ts";
import { checkProbes, type ProbeFacts } from "./checks-probes.ts";

export const DEFAULT_RANGE = "10.32.0.0/12";
/** A pod its kubelet took on this long ago and still without an address is stuck. */
export const STUCK_AFTER_MS = 2 * 60_000;

export type ClusterFacts = {
  server: string;
  daemonSet?: V1DaemonSet;
  configMap?: V1ConfigMap;
  nodes: V1Node[];
  agentPods: V1Pod[];
  pods: V1Pod[];
  kubernetesService?: V1Service;
  now: number;
  /** What the in-pod probes saw (gather/probe-pods.ts), when they ran; undefined: not run. */
  probes?: ProbeFacts;
  /** The tail of each node's weave-npc container log, by node (its drop lines). */
  npcLogs?: Record<string, { lines: string[]; error?: string }>;
};

const NS = "kube-system";
const cond = (n: V1Node, type: string) => n.status?.conditions?.find((c) => c.type === type);
const podReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

/** The pod range: the ConfigMap's, else the DaemonSet's IPALLOC_RANGE, else the default. */
export function clusterRange(f: ClusterFacts): string {
  const env = f.daemonSet?.spec?.template.spec?.containers
    .flatMap((c) => c.env ?? [])
    .find((e) => e.name === "IPALLOC_RANGE")?.value;
  return f.configMap?.data?.["ipalloc-range"] ?? env ?? DEFAULT_RANGE;
}

export function checkDaemonSet(f: ClusterFacts): CheckResult[] {
  const ds = f.daemonSet;
  if (!ds)
    return [
      result(
        "daemonset",
        "fail",
        undefined,
        `no DaemonSet ${NS}/weave-net on ${f.server}`,
        "install the network: weave install",
      ),
    ];
  const st = ds.status;
  const desired = st?.desiredNumberScheduled ?? 0;
  const ready = st?.numberReady ?? 0;
  const current =
    (st?.observedGeneration ?? 0) >= (ds.metadata?.generation ?? 0) && (st?.updatedNumberScheduled ?? 0) >= desired;
  const text = `${ready}/${desired} agents ready, ${st?.updatedNumberScheduled ?? 0} up to date`;
  if (desired === 0 && f.nodes.length)
    return [
      result(
        "daemonset",
        "fail",
        undefined,
        `DaemonSet ${NS}/weave-net schedules no pod on ${plural(f.nodes.length, "node")}`,
        `look at its events and the nodes' taints: kubectl -n ${NS} describe daemonset weave-net`,
      ),
    ];
  if (!current)
    return [
      result(
        "daemonset",
        "warn",
        undefined,
        `DaemonSet ${NS}/weave-net is still rolling out: ${text}`,
        `wait, or watch it: kubectl -n ${NS} rollout status daemonset weave-net`,
      ),
    ];
  if (ready < desired)
    return [
      result(
        "daemonset",
        "fail",
        undefined,
        `DaemonSet ${NS}/weave-net: ${text}`,
        "see agent-pods for the nodes whose agent is not ready",
      ),
    ];
  return [result("daemonset", "pass", undefined, `DaemonSet ${NS}/weave-net: ${text}`)];
}

export function checkAgentPods(f: ClusterFacts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of f.nodes) {
    const name = n.metadata?.name ?? "?";
    const pods = f.agentPods.filter((p) => p.spec?.nodeName === name && !p.metadata?.deletionTimestamp);
    const logs = `kubectl -n ${NS} logs -c weave ${pods[0]?.metadata?.name ?? `<the weave-net pod on ${name}>`}`;
    if (!pods.length) {
      if (f.daemonSet) {
        const fix =
          "the DaemonSet tolerates every taint, so look at why it was not scheduled: " +
          `kubectl -n ${NS} describe daemonset weave-net; kubectl describe node ${name}`;
        out.push(result("agent-pods", "fail", name, "no weave-net agent pod on this node", fix));
      }
      continue;
    }
    if (pods.length > 1)
      out.push(
        result(
          "agent-pods",
          "warn",
          name,
          `${pods.length} agent pods on this node: ${list(pods.map((p) => p.metadata?.name ?? "?"))}`,
          "normal for a moment during a rollout; if it lasts, delete the older one",
        ),
      );
    const p = pods.sort(
      (a, b) => +new Date(b.metadata?.creationTimestamp ?? 0) - +new Date(a.metadata?.creationTimestamp ?? 0),
    )[0]!;
    const containers = p.status?.containerStatuses ?? [];
    const notReady = containers.filter((c) => !c.ready).map((c) => c.name);
    const restarts = containers.reduce((s, c) => s + (c.restartCount ?? 0), 0);
    if (!podReady(p) || notReady.length) {
      out.push(
        result(
          "agent-pods",
          "fail",
          name,
          `${podState(p)}${notReady.length ? `; not ready: ${notReady.join(", ")}` : ""}`,
          `read its log: ${logs}; a WeaveCNIConflict event (kubectl describe node ${name}) means another network's CNI config is on the node`,
        ),
      );
    } else if (restarts > 0) {
      const last = containers.find((c) => c.lastState?.terminated)?.lastState?.terminated;
      const ended = last && [last.reason, `exit ${last.exitCode}`].filter(Boolean).join(", ");
      const lastRun = ended ? ` (last: ${ended})` : "";
      out.push(
        result(
          "agent-pods",
          "warn",
          name,
          `${p.metadata?.name} is ready but restarted ${plural(restarts, "time")}${lastRun}`,
          `read the previous run's log: ${logs} --previous`,
        ),
      );
    } else
      out.push(
        result(
          "agent-pods",
          "pass",
          name,
          `${p.metadata?.name} ready, ${plural(containers.length, "container")} ready`,
        ),
      );
  }
  return out;
}

export function checkNodes(f: ClusterFacts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of f.nodes) {
    const name = n.metadata?.name ?? "?";
    const ready = cond(n, "Ready");
    if (ready?.status !== "True")
      out.push(
        result(
          "node-ready",
          "fail",
          name,
          `node not Ready: ${ready ? `${ready.reason ?? ready.status}${ready.message ? ` (${ready.message})` : ""}` : "no Ready condition"}`,
          `a node whose runtime has no CNI config stays NotReady: see agent-pods; else kubectl describe node ${name}`,
        ),
      );
    else out.push(result("node-ready", "pass", name, "Ready"));
    const nu = cond(n, "NetworkUnavailable");
    if (nu?.status === "True")
      out.push(
        result(
          "node-network",
          "fail",
          name,
          `NetworkUnavailable=True (${nu.reason ?? "no reason"}${nu.message ? `: ${nu.message}` : ""})`,
          "the agent sets it False once it is ready; see agent-pods for this node",
        ),
      );
    else if (nu)
      out.push(result("node-network", "pass", name, `NetworkUnavailable=${nu.status} (${nu.reason ?? "no reason"})`));
  }
  return out;
}

export function checkClusterPods(f: ClusterFacts): CheckResult[] {
  const out: CheckResult[] = [];
  let range: Cidr | undefined;
  try {
    range = parseCidr(clusterRange(f));
  } catch {
    /* an unreadable range: addresses are not compared with it */
  }
  const pods = f.pods.filter(
    (p) =>
      !p.spec?.hostNetwork &&
      p.spec?.nodeName &&
      !p.metadata?.deletionTimestamp &&
      ["Pending", "Running"].includes(p.status?.phase ?? "Pending"),
  );
  let ok = 0;
  for (const p of pods) {
    const id = `${p.metadata?.namespace}/${p.metadata?.name}`;
    const ip = p.status?.podIP;
    // startTime: when the kubelet took the pod on (and would have run CNI ADD soon after).
    const age = f.now - +new Date(p.status?.startTime ?? p.metadata?.creationTimestamp ?? f.now);
    if (!ip) {
      if (age > STUCK_AFTER_MS) {
        const fix =
          `see why CNI ADD fails: kubectl -n ${p.metadata?.namespace} describe pod ${p.metadata?.name} ` +
          `(FailedCreatePodSandBox events), then agent-pods for ${p.spec!.nodeName}`;
        out.push(
          result(
            "pod-address",
            "fail",
            p.spec!.nodeName,
            `pod ${id} has had no address for ${Math.round(age / 60_000)} min (${p.status?.phase ?? "Pending"})`,
            fix,
          ),
        );
      }
      continue;
    }
    if (range && isIpv4(ip) && !contains(range, ipToNum(ip)))
      out.push(
        result(
          "pod-address",
          "fail",
          p.spec!.nodeName,
          `pod ${id} has ${ip}, outside the pod range ${formatCidr(range)}`,
          "another network plugin wired it (see a second CNI config on that node): delete the pod once only weave's config is left",
        ),
      );
    else ok++;
  }
  if (ok || !out.length)
    out.push(
      result(
        "pod-address",
        "pass",
        undefined,
        `${ok} of ${plural(pods.length, "pod")} (not hostNetwork) have an address in the range`,
      ),
    );
  return out;
}

export function checkClusterRange(f: ClusterFacts): CheckResult[] {
  const text = clusterRange(f);
  let r: Cidr;
  try {
    r = parseCidr(text);
  } catch (e) {
    return [
      result(
        "range-overlap",
        "fail",
        undefined,
        `the pod range ${text} is not a CIDR: ${(e as Error).message}`,
        "fix ipalloc-range in ConfigMap kube-system/weave-net by installing again: weave install --ipalloc-range <cidr>",
      ),
    ];
  }
  const out: CheckResult[] = [];
  for (const n of f.nodes) {
    for (const a of n.status?.addresses ?? []) {
      const nodeAddress = a.type === "InternalIP" || a.type === "ExternalIP";
      if (nodeAddress && rangeHolds(asRange(r), a.address)) {
        out.push(
          result(
            "range-overlap",
            "fail",
            n.metadata?.name,
            `the pod range ${text} holds the node's ${a.type} ${a.address}`,
            "pick an IPALLOC_RANGE that holds no node address: weave uninstall, then weave install --ipalloc-range <cidr> (agents' data dirs need resetting)",
          ),
        );
      }
    }
  }
  const ip = f.kubernetesService?.spec?.clusterIP;
  let svcText = "the service range is unknown (no IPv4 ClusterIP on Service default/kubernetes)";
  if (ip && isIpv4(ip)) {
    const svc = { base: maskOf(ipToNum(ip), INFERRED_SERVICE_PREFIX), prefix: INFERRED_SERVICE_PREFIX };
    svcText = `the service range ${formatCidr(svc)} (inferred from ClusterIP ${ip})`;
    if (contains(r, ipToNum(ip)))
      out.push(
        result(
          "range-overlap",
          "fail",
          undefined,
          `the pod range ${text} holds ${ip}, the ClusterIP of Service default/kubernetes`,
          "pick an IPALLOC_RANGE outside the service range: weave uninstall, then weave install --ipalloc-range <cidr>",
        ),
      );
    else if (overlaps(r, svc))
      out.push(
        result(
          "range-overlap",
          "warn",
          undefined,
          `the pod range ${text} overlaps ${svcText}; the real range may be smaller`,
          "compare with kube-apiserver --service-cluster-ip-range; if they overlap, reinstall with another --ipalloc-range",
        ),
      );
  }
  if (!out.length)
    out.push(
      result(
        "range-overlap",
        "pass",
        undefined,
        `the pod range ${text} holds no node address and overlaps ${svcText.replace(/^the service range is unknown.*/, "no known service range")}`,
      ),
    );
  return out;
}

/** What cannot be checked through the API alone, said as a warning (see the file's note). */
export function checkInPodProbes(f: ClusterFacts): CheckResult[] {
  if (f.probes) return checkProbes(f.probes); // they ran: their checks replace the warning
  const notRun =
    `not run: pinging between test pods on each of ${plural(f.nodes.length, "node")}, ` +
    "reaching the kubernetes Service and resolving kubernetes.default need pods and the exec API, " +
    "which weave doctor does not use yet";
  const pod = "kubectl run doctor-t --rm -it --restart=Never --image=busybox";
  const pinned = `--overrides='{"spec":{"nodeName":"NODE"}}'`;
  const probe = "nslookup kubernetes.default && nc -w 2 kubernetes.default 443 </dev/null && echo ok";
  const command = `${pod} ${pinned} -- sh -c '${probe}'`;
  const byHand = `check by hand from each node: ${command}; and run weave doctor --node on the nodes`;
  return [result("in-pod-probes", "warn", undefined, notRun, byHand)];
}

export function evaluateCluster(f: ClusterFacts): CheckResult[] {
  const checks = [checkDaemonSet, checkAgentPods, checkNodes, checkClusterNpc, checkClusterPods, checkClusterRange];
  return [...checks, checkInPodProbes].flatMap((c) => c(f));
}
