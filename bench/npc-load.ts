/**
 * The pieces of bench/npc.ts: the policy load put on the lab's API server (pods that
 * exist only as API objects, the policies over them), the poll that sees a policy in a
 * node's kernel, and the two traffic measurements between pods (iperf3's TCP throughput,
 * and new TCP connections per second from a small Bun client against a Bun listener that
 * closes each connection at once). Every helper process is tracked by pid (lib.ts's
 * `running`), so the benchmark's cleanup ends exactly those.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LabApi } from "../net/lab/api-client.ts";
import { BenchError, PATH, running } from "./lib.ts";

export const NS = "bench";
export const IPERF_PORT = 5201;
export const CONN_PORT = 5202;
const POLICIES = `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`;

const nsArgv = (netns: string, cmd: string[]) => ["nsenter", `--net=${netns}`, ...cmd];

/**
 * `count` Pods bound to a node no lab has (`ghost`), so no kubelet wires them, with their
 * status (Running, an address of 10.100.0.0/16, outside the lab's range) written through
 * the status subresource as a kubelet would; labelled group=g<i % groups>.
 */
export async function createGhostPods(api: LabApi, count: number, groups: number): Promise<void> {
  const base = `/api/v1/namespaces/${NS}/pods`;
  const one = async (i: number) => {
    const name = `ghost-${i}`;
    const ip = `10.100.${i >> 8}.${i & 255}`;
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, labels: { group: `g${i % groups}` } },
      spec: { nodeName: "ghost", containers: [{ name: "c", image: "none" }] },
    };
    const made = await api.create(base, pod);
    const status = { phase: "Running", podIP: ip, podIPs: [{ ip }] };
    const r = await api.request("PUT", `${base}/${name}/status`, { ...made, status });
    if (r.status >= 300) throw new BenchError(`PUT ${base}/${name}/status: ${r.status} ${r.doc.message ?? ""}`);
  };
  for (let i = 0; i < count; i += 50)
    await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, k) => one(i + k)));
}

/**
 * The standing policies: `count - 1` policies selecting every role=bench pod (the server
 * and the targets), each allowing one ghost group on the two benchmark ports, and a last
 * one (sorted last by name) allowing the client: the client's new connections walk the
 * rules of all the others first.
 */
export async function createStandingPolicies(api: LabApi, count: number): Promise<void> {
  const ports = [{ port: IPERF_PORT }, { port: CONN_PORT }];
  const subjects = { matchLabels: { role: "bench" } };
  const policy = (name: string, from: object) => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name },
    spec: { podSelector: subjects, ingress: [{ from: [{ podSelector: from }], ports }] },
  });
  const names = Array.from({ length: count - 1 }, (_, i) => `p${String(i).padStart(3, "0")}`);
  for (let i = 0; i < names.length; i += 20)
    await Promise.all(
      names.slice(i, i + 20).map((n, k) => api.create(POLICIES, policy(n, { matchLabels: { group: `g${i + k}` } }))),
    );
  await api.create(POLICIES, policy("zz-allow-client", { matchLabels: { role: "client" } }));
}

export async function deleteStandingPolicies(api: LabApi, count: number): Promise<void> {
  const names = [...Array.from({ length: count - 1 }, (_, i) => `p${String(i).padStart(3, "0")}`), "zz-allow-client"];
  for (let i = 0; i < names.length; i += 20)
    await Promise.all(names.slice(i, i + 20).map((n) => api.delete(`${POLICIES}/${n}`)));
}

/** The measured policy: every role=bench pod, from one ghost group, on port 80. */
export function measuredPolicy(name: string, group: string) {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name },
    spec: {
      podSelector: { matchLabels: { role: "bench" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { group } } }], ports: [{ port: 80 }] }],
    },
  };
}

export const policyPath = (name: string) => `${POLICIES}/${name}`;

/** The comments of the rules in `chain` of a node's table (the compiler starts each with `<ns>/<policy> <dir>[i]`). */
export function chainComments(netns: string, chain: string): string {
  const r = Bun.spawnSync(nsArgv(netns, ["nft", "-j", "list", "chain", "inet", "weave-npc", chain]), {
    env: { PATH },
    stdout: "pipe",
    stderr: "ignore",
  });
  return r.exitCode === 0 ? r.stdout.toString() : "";
}

/** Poll `chain` in each namespace until `has(text)`; the ms (since `t0`) each first did, or throw after `timeoutMs`. */
export async function waitInKernels(
  targets: { netns: string; chain: string }[],
  has: (comments: string) => boolean,
  t0: number,
  timeoutMs = 10_000,
): Promise<number[]> {
  const seen: (number | undefined)[] = targets.map(() => undefined);
  while (seen.some((x) => x === undefined)) {
    if (performance.now() - t0 > timeoutMs)
      throw new BenchError(`not in every node's kernel after ${timeoutMs / 1000} s: ${JSON.stringify(seen)}`);
    targets.forEach((t, i) => {
      if (seen[i] === undefined && has(chainComments(t.netns, t.chain))) seen[i] = performance.now() - t0;
    });
    await Bun.sleep(5);
  }
  return seen as number[];
}

function spawnTracked(argv: string[]) {
  const p = Bun.spawn(argv, { env: { PATH }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  running.add(p.pid);
  void p.exited.then(() => running.delete(p.pid));
  return p;
}

/** Whether something in `netns` listens on TCP `port`. */
function listening(netns: string, port: number): boolean {
  const r = Bun.spawnSync(nsArgv(netns, ["ss", "-Htln", `sport = :${port}`]), { env: { PATH }, stdout: "pipe" });
  return r.stdout.toString().trim().length > 0;
}

async function waitListening(netns: string, port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (listening(netns, port)) return;
    await Bun.sleep(10);
  }
  throw new BenchError(`nothing listened on ${port} in ${netns}`);
}

/** One iperf3 TCP stream from `client` to `serverIp` for `seconds` (+1 s omitted); Gbit/s received. */
export async function iperf(server: string, client: string, serverIp: string, seconds: number): Promise<number> {
  const s = spawnTracked(nsArgv(server, ["iperf3", "-s", "-1", "-p", String(IPERF_PORT)]));
  await waitListening(server, IPERF_PORT);
  const argv = ["iperf3", "-c", serverIp, "-p", String(IPERF_PORT), "-t", String(seconds), "-O", "1", "-J"];
  const c = spawnTracked(nsArgv(client, argv));
  const [out, code] = await Promise.all([new Response(c.stdout).text(), c.exited]);
  await s.exited;
  // biome-ignore lint/suspicious/noExplicitAny: iperf3 -J output, one field read
  let j: any;
  try {
    j = JSON.parse(out);
  } catch {
    throw new BenchError(`iperf3 -c ${serverIp} exited ${code} without JSON: ${out.slice(0, 300)}`);
  }
  const bps = j?.end?.sum_received?.bits_per_second;
  if (typeof bps !== "number") throw new BenchError(`iperf3 -c ${serverIp}: ${j?.error ?? "no end.sum_received"}`);
  return bps / 1e9;
}

const LISTENER = (port: number) =>
  `Bun.listen({ hostname: "0.0.0.0", port: ${port}, socket: { open(s) { s.end(); }, data() {} } });`;

/** The client: `workers` loops, each connecting, waiting for the server's close, again, for `ms`; prints the count. */
const CONNECTOR = (ip: string, port: number, workers: number, ms: number) => `
let done = 0, failed = 0;
const end = performance.now() + ${ms};
const once = () => new Promise((resolve) => {
  Bun.connect({ hostname: "${ip}", port: ${port}, socket: {
    data() {}, close() { done++; resolve(); }, error() { failed++; resolve(); }, connectError() { failed++; resolve(); },
  } }).catch(() => { failed++; resolve(); });
});
const worker = async () => { while (performance.now() < end) await once(); };
await Promise.all(Array.from({ length: ${workers} }, worker));
console.log(JSON.stringify({ done, failed }));
`;

/** New TCP connections per second from `client` to `serverIp` (a listener in `server` that closes each at once). */
export async function connectionRate(
  tmp: string,
  server: string,
  client: string,
  serverIp: string,
  seconds: number,
  workers = 16,
): Promise<{ perSecond: number; failed: number }> {
  const listenerFile = join(tmp, "conn-listener.ts");
  const clientFile = join(tmp, "conn-client.ts");
  writeFileSync(listenerFile, LISTENER(CONN_PORT));
  writeFileSync(clientFile, CONNECTOR(serverIp, CONN_PORT, workers, seconds * 1000));
  const l = spawnTracked(nsArgv(server, [process.execPath, listenerFile]));
  try {
    await waitListening(server, CONN_PORT);
    const c = spawnTracked(nsArgv(client, [process.execPath, clientFile]));
    const [out, code] = await Promise.all([new Response(c.stdout).text(), c.exited]);
    if (code !== 0) throw new BenchError(`the connection client exited ${code}: ${out.slice(0, 300)}`);
    const { done, failed } = JSON.parse(out.trim().split("\n").at(-1)!) as { done: number; failed: number };
    return { perSecond: done / seconds, failed };
  } finally {
    l.kill("SIGTERM");
    await l.exited;
  }
}

/** A process's resident set (VmRSS), MiB. */
export function rssMiB(pid: number): number {
  const status = Bun.spawnSync(["cat", `/proc/${pid}/status`], { stdout: "pipe" }).stdout.toString();
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}
