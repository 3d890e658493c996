/**
 * The lab: a Kubernetes cluster on one machine out of network namespaces.
 *
 *   <name>-u            underlay namespace with bridge br0 (the "switch" between nodes);
 *                       br0 holds 198.18.0.1, where the nodes reach the lab's API server
 *   <name>-x            a host outside the cluster on the underlay, 198.18.0.254/24
 *   <name>-n<i>         a node: eth0 = 198.18.0.<10+i>/24 on br0, a real agent inside,
 *                       run with a kubeconfig, so it finds its peers in the Node list
 *   <name>-n<i>-p<j>    a pod: a Pod object, wired by the lab's kubelet with the real plugin
 *
 * `up` starts the control plane first (control-plane.ts: the API server, kubelet and
 * controllers, in a process of their own), then the nodes; once the API lists them, the
 * agents; then the pods, created through the API. Every resource is recorded in lab.json
 * (state.ts) as soon as it exists, so `down` removes exactly what `up` made, by name and
 * pid, even after a failed `up`.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { CONFLIST_FILE, weaveConflist } from "../cni/conflist.ts";
import { WeaveError } from "../errors.ts";
import { openHost } from "../host/host.ts";
import { createNamedNetns, deleteNamedNetns, netnsPath } from "../host/netns.ts";
import { pidAlive, stopPid } from "../host/process.ts";
import { stopLeftoverWireguardGo } from "../host/wireguard-go.ts";
import { LabApi } from "./api-client.ts";
import { startNpcs } from "./npc.ts";
import { podObject } from "./objects.ts";
import { agentSocket, inNs, type LabTools, runPlugin } from "./plugin.ts";
import {
  API_IP,
  findNode,
  type LabNode,
  type LabState,
  labDir,
  mustReadLab,
  nodeIp,
  OUTSIDE_IP,
  readLab,
  saveLab,
  updateLab,
} from "./state.ts";

export type { LabTools } from "./plugin.ts";

const NAME_RULE = /^[a-z][a-z0-9]{0,7}$/;

function tail(file: string, lines = 5): string {
  if (!existsSync(file)) return "";
  return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join("\n");
}

/** Start a detached process whose output goes to `logFile`; returns its pid. */
function startDetached(argv: string[], logFile: string, what: string): number {
  const logFd = openSync(logFile, "a");
  try {
    // A password reaches an agent only as its --password-file, never by inheritance.
    const { WEAVE_PASSWORD: _, WEAVE_PASSWORD_NEXT: _next, ...env } = process.env;
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", logFd, logFd], env });
    child.unref();
    if (!child.pid) throw new WeaveError("E_LAB_START", `could not start ${what}`);
    return child.pid;
  } finally {
    closeSync(logFd);
  }
}

/** Give a lab node its own CNI conf dir, `<dataDir>/net.d`, with weave's conflist as setup-cni writes it. */
export function writeLabCniConf(node: LabNode): string {
  const dir = join(node.dataDir, "net.d");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, CONFLIST_FILE), `${JSON.stringify(weaveConflist(agentSocket(node)), null, 2)}\n`);
  return dir;
}

/**
 * Start the agent of `node` in its namespace; returns its pid (nsenter execs it). With the
 * lab's control plane it runs as in a cluster (a kubeconfig, peers from the Node list);
 * `peers` is for labs made without one (benchmarks that run bare agents).
 */
export function startAgent(tools: LabTools, node: LabNode, s: LabState, peers: string[] = []): number {
  mkdirSync(node.dataDir, { recursive: true });
  const cluster = s.controlPlane?.nodeKubeconfig ? ["--kubeconfig", s.controlPlane.nodeKubeconfig] : [];
  const args = [
    "agent",
    ...["--data-dir", node.dataDir, "--nickname", node.name, "--socket", agentSocket(node)],
    // /metrics on the node's underlay address, where a Prometheus in <lab>-u scrapes it
    ...["--metrics-addr", `${node.ip}:6782`],
    ...cluster,
    ...(peers.length ? ["--peers", peers.join(",")] : []),
    ...(s.ipallocRange ? ["--ipalloc-range", s.ipallocRange] : []),
    // the password as a file, never on a command line; wireguard-go's socket per node
    ...encryptionArgs(node, s),
  ];
  const argv = ["nsenter", `--net=${netnsPath(node.netns)}`, ...tools.weave, ...args];
  return startDetached(argv, join(node.dataDir, "agent.log"), `the agent of ${node.name}`);
}

/** The node's password file, if the lab or the node has one. */
export const nodePasswordFile = (node: LabNode, s: LabState) => node.passwordFile ?? s.passwordFile;

/** wireguard-go's socket directory of a lab node (its own, under its data dir). */
export const wgSocketDir = (node: LabNode) => join(node.dataDir, "wireguard");

function encryptionArgs(node: LabNode, s: LabState): string[] {
  const file = nodePasswordFile(node, s);
  return file ? ["--password-file", file, "--wireguard-socket-dir", wgSocketDir(node)] : [];
}

/** Write a password file, mode 0600 (made so: the bytes are never in a wider file). */
export function writePasswordFile(path: string, password: Uint8Array): void {
  rmSync(path, { force: true });
  writeFileSync(path, password, { mode: 0o600, flag: "wx" });
}

export function agentReady(tools: LabTools, node: string): boolean {
  return inNs(node, [...tools.weave, "status"]).code === 0;
}

export async function waitAgentReady(tools: LabTools, node: LabNode, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (agentReady(tools, node.netns)) return;
    if (!pidAlive(node.agentPid)) {
      const log = tail(join(node.dataDir, "agent.log"));
      throw new WeaveError("E_LAB_AGENT", `the agent of ${node.name} exited:\n${log}`);
    }
    await Bun.sleep(50);
  }
  const where = `see ${node.dataDir}/agent.log`;
  throw new WeaveError("E_LAB_AGENT", `the agent of ${node.name} was not ready after ${timeoutMs / 1000}s (${where})`);
}

export async function stopAgent(pid: number): Promise<void> {
  await stopPid(pid);
}

/** The lab's API, once its control plane is up. */
export function labApi(s: LabState): LabApi {
  if (!s.controlPlane?.url) throw new WeaveError("E_LAB_API", `lab "${s.name}" has no API server running`);
  return new LabApi(s.controlPlane.url);
}

/** Start `weave lab serve` and wait until it has written where its API server is. */
async function startControlPlane(tools: LabTools, name: string, timeoutMs = 15000): Promise<LabState> {
  const logFile = join(labDir(name), "control-plane.log");
  const pid = startDetached([...tools.weave, "lab", "serve", "--name", name], logFile, "the lab's control plane");
  updateLab(name, (s) => {
    s.controlPlane = { pid, url: "", nodeUrl: "", nodeKubeconfig: "" };
  });
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(25)) {
    const s = mustReadLab(name);
    if (s.controlPlane?.url) return s;
    if (!pidAlive(pid)) throw new WeaveError("E_LAB_API", `the lab's control plane exited:\n${tail(logFile)}`);
  }
  throw new WeaveError("E_LAB_API", `the lab's control plane was not up after ${timeoutMs / 1000}s (see ${logFile})`);
}

/** Wait until the API lists these nodes (the controllers register them within a second). */
export async function waitNodesListed(s: LabState, names: string[], timeoutMs = 10000): Promise<void> {
  const api = labApi(s);
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(50)) {
    const list = await api.get("/api/v1/nodes");
    const listed = new Set((list?.items ?? []).map((n: { metadata: { name: string } }) => n.metadata.name));
    if (names.every((n) => listed.has(n))) return;
  }
  throw new WeaveError(
    "E_LAB_API",
    `the lab's API did not list the nodes ${names.join(", ")} within ${timeoutMs / 1000}s`,
  );
}

/** Make node `i`'s namespace, its cable to the underlay and its CNI conf dir; records it. */
export function createNode(name: string, i: number): LabNode {
  const node: LabNode = {
    name: `${name}-n${i}`,
    netns: `${name}-n${i}`,
    ip: nodeIp(i),
    agentPid: 0,
    dataDir: join(labDir(name), `n${i}`),
  };
  node.cniConfDir = writeLabCniConf(node);
  createNamedNetns(node.netns);
  updateLab(name, (s) => {
    s.nodes.push(node);
  });
  cable(mustReadLab(name).underlay, node.netns, `n${i}`, `${node.ip}/24`);
  return node;
}

/** A veth from the underlay's br0 to `eth0` of `ns`, with `cidr` on eth0. */
function cable(underlay: string, ns: string, ifname: string, cidr: string): void {
  const u = openHost(netnsPath(underlay));
  try {
    const br = u.link("br0");
    if (!br) throw new WeaveError("E_LAB_START", `the underlay ${underlay} has no br0`);
    const v = u.addVeth({ name: ifname, mtu: 1500, peer: { name: "eth0", netns: netnsPath(ns) } });
    u.setLink(v.index, { master: br.index, up: true });
  } finally {
    u.close();
  }
  const n = openHost(netnsPath(ns));
  try {
    const eth0 = n.link("eth0")!;
    n.setLink(eth0.index, { up: true });
    n.addAddr(eth0.index, cidr);
  } finally {
    n.close();
  }
}

function createUnderlay(s: LabState): void {
  createNamedNetns(s.underlay);
  const u = openHost(netnsPath(s.underlay));
  try {
    const br = u.addBridge("br0", { mtu: 1500 });
    u.setLink(br.index, { up: true });
    u.addAddr(br.index, `${API_IP}/24`);
  } finally {
    u.close();
  }
}

/** Wait until the weave-net DaemonSet counts every node's agent pod Ready (kubectl shows 2/2: weave and weave-npc). */
async function waitAgentPodsReady(s: LabState, timeoutMs = 10000): Promise<void> {
  const api = labApi(s);
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(50)) {
    const ds = await api.get("/apis/apps/v1/namespaces/kube-system/daemonsets/weave-net");
    if (ds?.status?.numberReady === mustReadLab(s.name).nodes.length) return;
  }
  throw new WeaveError("E_LAB_API", `the weave-net agent pods were not all Ready within ${timeoutMs / 1000}s`);
}

/** Start the agents of `nodes` and wait until they are ready and meshed, and their pods say so. */
export async function startAgents(tools: LabTools, name: string, nodes: LabNode[]): Promise<LabState> {
  for (const node of nodes) {
    const s = mustReadLab(name);
    const pid = startAgent(tools, node, s);
    updateLab(name, (state) => {
      findNode(state, node.name).agentPid = pid;
    });
  }
  const s = mustReadLab(name);
  for (const node of nodes) await waitAgentReady(tools, findNode(s, node.name));
  await waitMesh(tools, s);
  // the agent pods' second container: weave npc, beside each agent
  if (s.controlPlane) await startNpcs(tools, name, nodes);
  await waitAgentPodsReady(s);
  return mustReadLab(name);
}

export async function labUp(
  name: string,
  nodes: number,
  podsPerNode: number,
  tools: LabTools,
  opts: { ipallocRange?: string; password?: Uint8Array } = {},
): Promise<LabState> {
  if (!NAME_RULE.test(name))
    throw new WeaveError(
      "E_BAD_FLAG",
      `--name "${name}" must be 1-8 lowercase letters or digits, starting with a letter`,
    );
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 200)
    throw new WeaveError("E_BAD_FLAG", `--nodes "${nodes}" must be an integer from 1 to 200`);
  if (!Number.isInteger(podsPerNode) || podsPerNode < 0 || podsPerNode > 100)
    throw new WeaveError("E_BAD_FLAG", `--pods "${podsPerNode}" must be an integer from 0 to 100`);
  if (readLab(name))
    throw new WeaveError("E_LAB_EXISTS", `lab "${name}" is already up; run: weave lab down --name ${name}`);
  if (!existsSync(tools.plugin))
    throw new WeaveError("E_NOT_BUILT", `the plugin ${tools.plugin} does not exist; run: bun run build`);

  mkdirSync(labDir(name), { recursive: true });
  const range = opts.ipallocRange ? { ipallocRange: opts.ipallocRange } : {};
  const passwordFile = opts.password ? join(labDir(name), "password") : undefined;
  if (passwordFile) writePasswordFile(passwordFile, opts.password!);
  saveLab({ name, underlay: `${name}-u`, ...range, ...(passwordFile ? { passwordFile } : {}), nodes: [], pods: [] });
  try {
    createUnderlay(mustReadLab(name));
    const outside = { netns: `${name}-x`, ip: OUTSIDE_IP };
    createNamedNetns(outside.netns);
    updateLab(name, (s) => {
      s.outside = outside;
    });
    cable(`${name}-u`, outside.netns, "x", `${OUTSIDE_IP}/24`);
    let s = await startControlPlane(tools, name);
    const made = Array.from({ length: nodes }, (_, k) => createNode(name, k + 1));
    await waitNodesListed(
      s,
      made.map((n) => n.name),
    );
    s = await startAgents(tools, name, made);
    tools.log(`${nodes} node(s) up, agents ready, mesh connected`);
    const pods = made.flatMap((node) =>
      Array.from({ length: podsPerNode }, (_, j) => ({ name: `${node.name}-p${j + 1}`, node: node.name })),
    );
    await createPods(
      s,
      pods.map((p) => ({ ...p, namespace: "default", labels: { app: p.name }, ports: [] })),
    );
    return mustReadLab(name);
  } catch (e) {
    tools.log(`lab up failed, removing what it made: ${(e as Error).message}`);
    await labDown(name, tools).catch((d) => tools.log(`cleanup: ${(d as Error).message}`));
    throw e;
  }
}

export type PodWanted = Parameters<typeof podObject>[0];

/** Create Pods through the API and wait until the kubelet has wired each (Running, with an address). */
export async function createPods(s: LabState, pods: PodWanted[], timeoutMs = 30000): Promise<void> {
  const api = labApi(s);
  for (const p of pods) await api.create(`/api/v1/namespaces/${p.namespace}/pods`, podObject(p));
  for (const deadline = Date.now() + timeoutMs; ; await Bun.sleep(50)) {
    const states = await Promise.all(pods.map((p) => api.get(`/api/v1/namespaces/${p.namespace}/pods/${p.name}`)));
    const waiting = states.filter((x) => !x?.status?.podIP);
    if (!waiting.length) return;
    if (Date.now() > deadline) {
      const why = waiting.map((x) => `${x?.metadata?.name}: ${podWaitReason(x)}`).join("; ");
      throw new WeaveError("E_LAB_POD", `pods were not running within ${timeoutMs / 1000}s: ${why}`);
    }
  }
}

// biome-ignore lint/suspicious/noExplicitAny: a Pod as the API returned it
function podWaitReason(pod: any): string {
  if (!pod) return "gone";
  const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
  return waiting ? `${waiting.reason}: ${waiting.message}` : (pod.status?.phase ?? "Pending");
}

/** Remove everything lab.json records; keeps going past failures and reports them. */
export async function labDown(name: string, tools: LabTools): Promise<string[]> {
  const before = mustReadLab(name);
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (e) {
      problems.push(`${what}: ${(e as Error).message}`);
    }
  };
  // The kubelet first, so it wires nothing more; then lab.json is complete.
  await attempt("stop the control plane", () => stopPid(before.controlPlane?.pid ?? 0));
  const s = mustReadLab(name);
  for (const pod of s.pods) {
    await attempt(`CNI DEL ${pod.name}`, () => {
      // With its agent stopped there is no one to release to; the node goes entirely.
      if (!pidAlive(s.nodes.find((n) => n.name === pod.node)?.agentPid ?? 0)) return;
      const node = s.nodes.find((n) => n.name === pod.node)!;
      const r = runPlugin(tools, node, "DEL", pod);
      if (r.code !== 0) throw new Error(r.stdout.trim() || r.stderr.trim());
    });
    await attempt(`delete ${pod.netns}`, () => deleteNamedNetns(basename(pod.netns)));
  }
  for (const node of s.nodes) {
    await attempt(`stop weave npc of ${node.name}`, () => stopPid(node.npcPid ?? 0));
    await attempt(`stop agent of ${node.name}`, () => stopAgent(node.agentPid));
    // the agent leaves its wireguard-go running (a restarted agent adopts it): stopped by pid
    if (nodePasswordFile(node, s))
      await attempt(`stop wireguard-go of ${node.name}`, () =>
        stopLeftoverWireguardGo({ socketDir: wgSocketDir(node) }),
      );
    await attempt(`delete ${node.netns}`, () => deleteNamedNetns(node.netns));
  }
  if (s.outside) await attempt(`delete ${s.outside.netns}`, () => deleteNamedNetns(s.outside!.netns));
  await attempt(`delete ${s.underlay}`, () => deleteNamedNetns(s.underlay));
  await attempt(`remove ${labDir(name)}`, () => rmSync(labDir(name), { recursive: true, force: true }));
  return problems;
}

export type MeshView = {
  node: string;
  reachable: number;
  established: number;
  peers: { nickname: string; address: string; reachable: boolean; connections: number }[];
};

type ReportRouter = {
  Peers: { NickName: string; Addresses: string[]; Reachable: boolean; Connections: { Established: boolean }[] }[];
  Connections: { State: string }[];
};

/** What each running agent's mesh looks like, from its /report. */
export function meshViews(tools: LabTools, s: LabState): MeshView[] {
  const out: MeshView[] = [];
  for (const n of s.nodes) {
    if (!pidAlive(n.agentPid)) continue;
    const r = inNs(n.netns, [...tools.weave, "report"]);
    if (r.code !== 0) continue;
    const router = (JSON.parse(r.stdout) as { Router?: ReportRouter }).Router;
    if (!router) continue;
    out.push({
      node: n.name,
      reachable: router.Peers.filter((p) => p.Reachable).length,
      established: router.Connections.filter((c) => c.State === "established").length,
      peers: router.Peers.map((p) => ({
        nickname: p.NickName,
        address: p.Addresses[0] ?? "",
        reachable: p.Reachable,
        connections: p.Connections.filter((c) => c.Established).length,
      })),
    });
  }
  return out;
}

/** Wait until every running agent reaches every running agent. */
export async function waitMesh(tools: LabTools, s: LabState, timeoutMs = 30000): Promise<MeshView[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = s.nodes.filter((n) => pidAlive(n.agentPid)).length;
    const views = meshViews(tools, s);
    if (views.length === running && views.every((v) => v.reachable === running)) return views;
    if (Date.now() > deadline) {
      const seen = views.map((v) => `${v.node} reaches ${v.reachable} of ${running}`).join(", ");
      throw new WeaveError("E_LAB_MESH", `the mesh did not connect within ${timeoutMs / 1000}s: ${seen}`);
    }
    await Bun.sleep(100);
  }
}

/** `weave lab agent stop|start NODE`: stop or start one node's agent; lab.json keeps its pid. */
export async function labAgent(name: string, action: string, node: string, tools: LabTools): Promise<LabNode> {
  const s = mustReadLab(name);
  const n = findNode(s, node);
  if (action === "stop") {
    await stopAgent(n.agentPid);
    return n;
  }
  if (action !== "start") throw new WeaveError("E_USAGE", `unknown agent action "${action}" (stop, start)`);
  if (pidAlive(n.agentPid))
    throw new WeaveError("E_AGENT_RUNNING", `the agent of ${n.name} is already running (pid ${n.agentPid})`);
  const pid = startAgent(tools, n, s);
  const after = updateLab(name, (state) => {
    const mine = findNode(state, n.name);
    mine.agentPid = pid;
    mine.agentRestarts = (mine.agentRestarts ?? 0) + 1;
  });
  await waitAgentReady(tools, findNode(after, n.name));
  return findNode(after, n.name);
}

const CUT_TABLE = "weavelabcut";

/** `weave lab cut|heal NODE`: drop or restore the node's mesh (TCP 6783), sleeve (UDP 6783) and VXLAN (UDP 6784) traffic. */
export function labCut(name: string, node: string, cut: boolean): LabNode {
  const s = mustReadLab(name);
  const n = findNode(s, node);
  // with encryption the pods' traffic is WireGuard's, UDP 6785
  const wg = nodePasswordFile(n, s) ? " udp dport 6785 drop; udp sport 6785 drop;" : "";
  const drops = `tcp dport 6783 drop; tcp sport 6783 drop; udp dport 6783 drop; udp sport 6783 drop; udp dport 6784 drop;${wg}`;
  nftTable(n, CUT_TABLE, cut ? drops : undefined);
  return n;
}

/** What `lab block` drops: everything between two nodes, or one UDP port (6784: VXLAN, 6785: WireGuard). */
export type BlockWhat = "all" | { udp: number };

/**
 * `weave lab block|unblock NODE PEER [--udp PORT]`: drop (or restore) the traffic between
 * two nodes' underlay addresses, all of it or one UDP port, with nftables in both nodes'
 * namespaces: the firewalls that send a pair of peers over the sleeve, or through a third.
 */
export function labBlock(
  name: string,
  node: string,
  peer: string,
  what: BlockWhat,
  block: boolean,
): [LabNode, LabNode] {
  const s = mustReadLab(name);
  const a = findNode(s, node);
  const b = findNode(s, peer);
  if (a.name === b.name) throw new WeaveError("E_USAGE", `lab block: ${a.name} and ${b.name} are the same node`);
  const port = what === "all" ? "" : ` udp dport ${what.udp}`;
  const label = what === "all" ? "all" : `udp${what.udp}`;
  for (const [self, other] of [
    [a, b],
    [b, a],
  ] as const) {
    const drops = `ip saddr ${other.ip}${port} drop; ip daddr ${other.ip}${port} drop;`;
    nftTable(self, `weavelabblock_${other.name}_${label}`, block ? drops : undefined);
  }
  return [a, b];
}

/** Replace (or with no rules, remove) one table of drop rules on a node's input and output. */
function nftTable(n: LabNode, table: string, drops: string | undefined): void {
  const reset = `add table inet ${table}\ndelete table inet ${table}\n`;
  const chain = (hook: string) =>
    `  chain ${hook} { type filter hook ${hook} priority -10; policy accept; ${drops} }\n`;
  const script = drops ? `${reset}table inet ${table} {\n${chain("input")}${chain("output")}}\n` : reset;
  const r = inNs(n.netns, ["nft", "-f", "-"], { stdin: script });
  if (r.code !== 0) throw new WeaveError("E_NFT", `nft in ${n.netns}: ${r.stderr.trim()}`);
}

/** The name of a pod's network namespace. */
export const podNetns = (p: { netns: string }) => basename(p.netns);

/** Ping every pod from every pod; true where the ping went through. */
export function pingMatrix(s: LabState): { from: string; to: string; ok: boolean }[] {
  const out: { from: string; to: string; ok: boolean }[] = [];
  for (const a of s.pods)
    for (const b of s.pods) {
      if (a === b) continue;
      const ok = inNs(podNetns(a), ["ping", "-c", "1", "-W", "2", b.ip]).code === 0;
      out.push({ from: a.name, to: b.name, ok });
    }
  return out;
}
