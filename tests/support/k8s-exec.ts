/**
 * A fake kubelet and a pods/exec endpoint for the API-server stand-in
 * (net/lab/api-server.ts), backed by a real lab (net/lab/lab.ts).
 *
 * Design: `startLabKubelet(lab)` gives `websocket` (pass it to startApiServer) and
 * `attach(store)`. Attached, it watches Pods in the store: a pod whose spec.nodeName is
 * a lab node gets a real network namespace (`<lab>-k<n>`) wired by the real CNI plugin
 * run inside that node's namespace, exactly as the lab wires its own pods
 * (`runPlugin`), and is then set Running with that address as podIP. A deleted pod gets
 * CNI DEL and its namespace removed. `nodes()` gives the Node objects of the lab's
 * nodes (InternalIP 198.18.0.1x, Ready) for the test to put in the store.
 *
 * The exec endpoint speaks what @kubernetes/client-node's Exec speaks: a websocket
 * upgrade of GET /api/v1/namespaces/NS/pods/NAME/exec?command=..&stdout=1&stderr=1,
 * subprotocol v4.channel.k8s.io; each binary frame starts with its channel (1 stdout,
 * 2 stderr, 3 status: a v1 Status, Success or Failure with the exit code as cause
 * ExitCode). `ping` runs for real in the pod's namespace (`nsenter --net=...`); any
 * other command (nc to a Service, nslookup through cluster DNS: neither exists in a
 * lab) is answered on stderr with a clear "not in the lab" message and exit code 1.
 * `stop()` removes every namespace it made, also on a failed test.
 */
import { netnsPath, createNamedNetns, deleteNamedNetns } from "../../net/host/netns.ts";
import type { LabState } from "../../net/lab/state.ts";
import { runPlugin } from "../../net/lab/plugin.ts";
import { RESOURCES, type Store, type WebSocketRoute } from "../../net/lab/api-server.ts";
import { tools } from "./lab.ts";

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are handled as loose JSON documents
type Doc = Record<string, any>;
type Backing = { netns: string; node: string; nodeNetns: string; containerId: string; ip?: string; error?: string };
type ExecData = { netns?: string; command: string[]; why?: string };

const PROTOCOLS = ["v4.channel.k8s.io", "channel.k8s.io"];

export type LabKubelet = {
  websocket: WebSocketRoute;
  attach(store: Store): void;
  /** The lab's nodes as Node objects (Ready, InternalIP). */
  nodes(): Doc[];
  /** Pods it backs now: pod key "ns/name" → namespace name and address. */
  backed(): Map<string, { netns: string; ip?: string; error?: string }>;
  /** Every command exec ran: "ns/pod: cmd...". */
  execs: string[];
  stop(): void;
};

const frame = (channel: number, data: Uint8Array | string) => {
  const body = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const out = new Uint8Array(body.length + 1);
  out[0] = channel;
  out.set(body, 1);
  return out;
};

const status = (code: number): Doc =>
  code === 0
    ? { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success" }
    : {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: `command terminated with non-zero exit code: exit status ${code}`,
        reason: "NonZeroExitCode",
        details: { causes: [{ reason: "ExitCode", message: String(code) }] },
      };

export function startLabKubelet(lab: LabState): LabKubelet {
  const pods = new Map<string, Backing>();
  const execs: string[] = [];
  let seq = 0;
  let store: Store | undefined;
  let unsubscribe: (() => void) | undefined;
  let stopped = false;

  const start = (pod: Doc) => {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const node = lab.nodes.find((n) => n.name === pod.spec?.nodeName);
    // Deleted meanwhile, or the kubelet stopped: nothing to make.
    if (
      stopped ||
      !node ||
      pods.has(key) ||
      (pod.status?.phase && pod.status.phase !== "Pending") ||
      !store?.get("v1", "Pod", pod.metadata.name, pod.metadata.namespace)
    )
      return;
    const b: Backing = {
      netns: `${lab.name}-k${seq++}`,
      node: node.name,
      nodeNetns: node.netns,
      containerId: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex"),
    };
    pods.set(key, b);
    try {
      createNamedNetns(b.netns);
      const r = runPlugin(tools, node.netns, "ADD", {
        name: pod.metadata.name,
        netns: netnsPath(b.netns),
        containerId: b.containerId,
      });
      if (r.code !== 0) throw new Error(`CNI ADD failed: ${r.stdout.trim()} ${r.stderr.trim()}`);
      b.ip = (JSON.parse(r.stdout) as { ips: { address: string }[] }).ips[0]!.address.split("/")[0]!;
    } catch (e) {
      b.error = (e as Error).message;
    }
    const current = store?.get("v1", "Pod", pod.metadata.name, pod.metadata.namespace);
    if (!current) return;
    const now = new Date().toISOString();
    current.status = b.ip
      ? {
          phase: "Running",
          podIP: b.ip,
          podIPs: [{ ip: b.ip }],
          hostIP: node.ip,
          startTime: now,
          conditions: [{ type: "Ready", status: "True" }],
          containerStatuses: (current.spec?.containers ?? []).map((c: Doc) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: true,
            restartCount: 0,
            state: { running: { startedAt: now } },
          })),
        }
      : {
          phase: "Pending",
          hostIP: node.ip,
          startTime: now,
          conditions: [{ type: "PodScheduled", status: "True" }],
          containerStatuses: (current.spec?.containers ?? []).map((c: Doc) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: "ContainerCreating", message: `FailedCreatePodSandBox: ${b.error}` } },
          })),
        };
    store!.put(current);
  };

  const remove = (key: string) => {
    const b = pods.get(key);
    if (!b) return;
    pods.delete(key);
    runPlugin(tools, b.nodeNetns, "DEL", {
      name: key.split("/")[1]!,
      netns: netnsPath(b.netns),
      containerId: b.containerId,
    });
    try {
      deleteNamedNetns(b.netns);
    } catch {
      /* already gone */
    }
  };

  const websocket: WebSocketRoute = {
    route(req, url) {
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/exec$/.exec(url.pathname);
      if (!m) return undefined;
      const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
      const protocol = PROTOCOLS.find((p) => offered.includes(p));
      const key = `${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`;
      const b = pods.get(key);
      const command = url.searchParams.getAll("command");
      const data: ExecData = b?.ip
        ? { netns: netnsPath(b.netns), command }
        : { command, why: `pod ${key} is not running on a lab node` };
      execs.push(`${key}: ${command.join(" ")}`);
      return { data, ...(protocol ? { protocol } : {}) };
    },
    handler: {
      async open(ws) {
        const d = ws.data as ExecData;
        const end = (code: number) => {
          ws.send(frame(3, JSON.stringify(status(code))));
          ws.close();
        };
        if (!d.netns) {
          ws.send(frame(2, `stand-in: ${d.why}\n`));
          return end(1);
        }
        if (d.command[0] !== "ping") {
          ws.send(
            frame(
              2,
              `stand-in: "${d.command.join(" ")}" needs a Service or cluster DNS, which the lab does not have\n`,
            ),
          );
          return end(1);
        }
        const p = Bun.spawn(["nsenter", `--net=${d.netns}`, ...d.command], {
          stdout: "pipe",
          stderr: "pipe",
          stdin: "ignore",
        });
        const pump = async (s: ReadableStream<Uint8Array>, ch: number) => {
          for await (const c of s) ws.send(frame(ch, c));
        };
        await Promise.all([pump(p.stdout, 1), pump(p.stderr, 2)]);
        end(await p.exited);
      },
      message() {
        /* no stdin */
      },
    },
  };

  return {
    websocket,
    execs,
    attach(s) {
      store = s;
      const podDef = RESOURCES.find((r) => r.kind === "Pod")!; // the store matches watchers by this very object
      // The store calls watchers inside its commit; the kubelet acts after it.
      const sub = s.subscribe({
        def: podDef,
        match: () => true,
        send: (e) => {
          const key = `${e.object.metadata.namespace}/${e.object.metadata.name}`;
          if (e.type === "ADDED") setTimeout(() => start(e.object), 10);
          else if (e.type === "DELETED") setTimeout(() => remove(key), 0);
        },
      });
      if (sub !== "expired") unsubscribe = sub;
    },
    nodes: () =>
      lab.nodes.map((n) => ({
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: n.name },
        status: {
          addresses: [{ type: "InternalIP", address: n.ip }],
          conditions: [
            { type: "Ready", status: "True", reason: "KubeletReady" },
            { type: "NetworkUnavailable", status: "False", reason: "WeaveIsUp" },
          ],
        },
      })),
    backed: () =>
      new Map(
        [...pods].map(([k, b]) => [
          k,
          { netns: b.netns, ...(b.ip ? { ip: b.ip } : {}), ...(b.error ? { error: b.error } : {}) },
        ]),
      ),
    stop() {
      stopped = true;
      unsubscribe?.();
      for (const key of [...pods.keys()]) remove(key);
    },
  };
}
