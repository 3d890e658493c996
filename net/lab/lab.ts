/**
 * The lab: a cluster on one machine out of network namespaces.
 *
 *   <name>-u            underlay namespace with bridge br0 (the "switch" between nodes)
 *   <name>-x            a host outside the cluster on the underlay, 198.18.0.254/24
 *   <name>-n<i>         a node: eth0 = 198.18.0.<10+i>/24 on br0, a real agent inside,
 *                       given every other node as --peers (as KUBE_PEERS would)
 *   <name>-n<i>-p<j>    a pod: wired by running the real plugin inside its node
 *
 * Every resource is recorded in /run/weave-lab/<name>/lab.json as soon as it exists, so
 * `down` removes exactly what `up` made (by name and pid), even after a failed `up`.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { openHost } from "../host/host.ts";
import { createNamedNetns, deleteNamedNetns, netnsPath } from "../host/netns.ts";
import { CONFLIST_FILE, pluginConfig, weaveConflist } from "../cni/conflist.ts";
import { WeaveError } from "../errors.ts";

export const LAB_ROOT = "/run/weave-lab";

export type LabNode = {
  name: string;
  netns: string;
  ip: string;
  agentPid: number;
  dataDir: string;
  /** The node's CNI conf dir (what its kubelet would read), holding weave's conflist; absent in labs made before it existed. */
  cniConfDir?: string;
};
export type LabPod = { name: string; node: string; netns: string; ip: string; containerId: string };
export type LabState = {
  name: string;
  underlay: string;
  outside?: { netns: string; ip: string };
  ipallocRange?: string;
  nodes: LabNode[];
  pods: LabPod[];
};

export type LabTools = {
  /** argv that runs `weave` (compiled binary, or bun + cli.ts). */
  weave: string[];
  /** Path of the CNI plugin binary (dist/cni/weave-net). */
  plugin: string;
  log(msg: string): void;
};

export function labDir(name: string): string {
  return join(LAB_ROOT, name);
}

export function readLab(name: string): LabState | undefined {
  const f = join(labDir(name), "lab.json");
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as LabState) : undefined;
}

function saveLab(s: LabState): void {
  const f = join(labDir(s.name), "lab.json");
  writeFileSync(`${f}.tmp`, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(`${f}.tmp`, f);
}

export function nodeIp(i: number): string {
  return `198.18.0.${10 + i}`;
}

export const OUTSIDE_IP = "198.18.0.254";

/** Run a command inside a named namespace (nsenter keeps the mount namespace and /sys). */
export function inNs(ns: string, cmd: string[], opts: { env?: Record<string, string>; stdin?: string } = {}) {
  const r = Bun.spawnSync(["nsenter", `--net=${netnsPath(ns)}`, ...cmd], {
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...opts.env },
    stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Run the plugin inside `node` as kubelet would, for the pod `pod`. */
export function runPlugin(
  tools: LabTools,
  node: string,
  command: string,
  pod: { name: string; netns?: string; containerId: string },
  prevResult?: unknown,
) {
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.containerId,
    CNI_IFNAME: "eth0",
    CNI_PATH: `${tools.plugin.replace(/\/[^/]+$/, "")}:/usr/lib/cni`,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`,
  };
  if (pod.netns) env.CNI_NETNS = pod.netns;
  return inNs(node, [tools.plugin], { env, stdin: JSON.stringify(pluginConfig(weaveConflist(), 0, prevResult)) });
}

export function agentReady(tools: LabTools, node: string): boolean {
  return inNs(node, [...tools.weave, "status"]).code === 0;
}

/**
 * Give a lab node its own CNI conf dir, `<dataDir>/net.d`, with weave's conflist as
 * setup-cni writes it on a real node, so `weave doctor --lab` can check it. Returns it.
 */
export function writeLabCniConf(node: LabNode): string {
  const dir = join(node.dataDir, "net.d");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, CONFLIST_FILE), `${JSON.stringify(weaveConflist(), null, 2)}\n`);
  return dir;
}

/** Is `pid` running? A zombie (dead, not yet reaped by its parent) is not. */
function pidAlive(pid: number): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Start the agent of `node` in its namespace; returns its pid (nsenter execs it). */
export function startAgent(tools: LabTools, node: LabNode, peers: string[] = [], ipallocRange?: string): number {
  mkdirSync(node.dataDir, { recursive: true });
  const logFd = openSync(join(node.dataDir, "agent.log"), "a");
  try {
    const args = [
      "agent",
      "--data-dir",
      node.dataDir,
      "--nickname",
      node.name,
      ...(peers.length ? ["--peers", peers.join(",")] : []),
      ...(ipallocRange ? ["--ipalloc-range", ipallocRange] : []),
    ];
    const child = spawn("nsenter", [`--net=${netnsPath(node.netns)}`, ...tools.weave, ...args], {
      detached: true,
      stdio: ["ignore", logFd, logFd],
    });
    child.unref();
    if (!child.pid) throw new WeaveError("E_LAB_AGENT", `could not start the agent of ${node.name}`);
    return child.pid;
  } finally {
    closeSync(logFd);
  }
}

export async function waitAgentReady(tools: LabTools, node: LabNode, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (agentReady(tools, node.netns)) return;
    if (!pidAlive(node.agentPid)) {
      const log = readFileSync(join(node.dataDir, "agent.log"), "utf8").trim().split("\n").slice(-5).join("\n");
      throw new WeaveError("E_LAB_AGENT", `the agent of ${node.name} exited:\n${log}`);
    }
    await Bun.sleep(50);
  }
  throw new WeaveError(
    "E_LAB_AGENT",
    `the agent of ${node.name} was not ready after ${timeoutMs / 1000}s (see ${node.dataDir}/agent.log)`,
  );
}

export async function stopAgent(pid: number): Promise<void> {
  if (!pid || !pidAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && pidAlive(pid); i++) await Bun.sleep(20);
  if (pidAlive(pid)) process.kill(pid, "SIGKILL");
}

export async function labUp(
  name: string,
  nodes: number,
  podsPerNode: number,
  tools: LabTools,
  opts: { ipallocRange?: string } = {},
): Promise<LabState> {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(name))
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
  const s: LabState = {
    name,
    underlay: `${name}-u`,
    ...(opts.ipallocRange ? { ipallocRange: opts.ipallocRange } : {}),
    nodes: [],
    pods: [],
  };
  saveLab(s);
  try {
    createNamedNetns(s.underlay);
    const u = openHost(netnsPath(s.underlay));
    try {
      const br = u.addBridge("br0", { mtu: 1500 });
      const wire = (ns: string, ifname: string, cidr: string) => {
        const v = u.addVeth({ name: ifname, mtu: 1500, peer: { name: "eth0", netns: netnsPath(ns) } });
        u.setLink(v.index, { master: br.index, up: true });
        const n = openHost(netnsPath(ns));
        try {
          const eth0 = n.link("eth0")!;
          n.setLink(eth0.index, { up: true });
          n.addAddr(eth0.index, cidr);
        } finally {
          n.close();
        }
      };
      s.outside = { netns: `${name}-x`, ip: OUTSIDE_IP };
      createNamedNetns(s.outside.netns);
      saveLab(s);
      wire(s.outside.netns, "x", `${OUTSIDE_IP}/24`);
      const ips = Array.from({ length: nodes }, (_, k) => nodeIp(k + 1));
      for (let i = 1; i <= nodes; i++) {
        const node: LabNode = {
          name: `${name}-n${i}`,
          netns: `${name}-n${i}`,
          ip: nodeIp(i),
          agentPid: 0,
          dataDir: join(labDir(name), `n${i}`),
        };
        node.cniConfDir = writeLabCniConf(node);
        createNamedNetns(node.netns);
        s.nodes.push(node);
        saveLab(s);
        wire(node.netns, `n${i}`, `${node.ip}/24`);
        node.agentPid = startAgent(
          tools,
          node,
          ips.filter((ip) => ip !== node.ip),
          s.ipallocRange,
        );
        saveLab(s);
      }
    } finally {
      u.close();
    }
    for (const node of s.nodes) await waitAgentReady(tools, node);
    await waitMesh(tools, s);
    tools.log(`${nodes} node(s) up, agents ready, mesh connected`);

    for (const node of s.nodes) {
      for (let j = 1; j <= podsPerNode; j++) {
        const pod: LabPod = {
          name: `${node.name}-p${j}`,
          node: node.name,
          netns: netnsPath(`${node.name}-p${j}`),
          ip: "",
          containerId: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex"),
        };
        createNamedNetns(pod.name);
        s.pods.push(pod);
        saveLab(s);
        const r = runPlugin(tools, node.netns, "ADD", pod);
        if (r.code !== 0)
          throw new WeaveError("E_LAB_POD", `CNI ADD for ${pod.name} failed: ${r.stdout.trim()} ${r.stderr.trim()}`);
        const result = JSON.parse(r.stdout) as { ips: { address: string }[] };
        pod.ip = result.ips[0]!.address.split("/")[0]!;
        saveLab(s);
      }
    }
    return s;
  } catch (e) {
    tools.log(`lab up failed, removing what it made: ${(e as Error).message}`);
    await labDown(name, tools).catch((d) => tools.log(`cleanup: ${(d as Error).message}`));
    throw e;
  }
}

/** Remove everything lab.json records; keeps going past failures and reports them. */
export async function labDown(name: string, tools: LabTools): Promise<string[]> {
  const s = readLab(name);
  if (!s) throw new WeaveError("E_NO_LAB", `no lab named "${name}" (${labDir(name)}/lab.json not found)`);
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (e) {
      problems.push(`${what}: ${(e as Error).message}`);
    }
  };
  for (const pod of s.pods) {
    await attempt(`CNI DEL ${pod.name}`, () => {
      // With its agent stopped there is no one to release to; the node goes entirely.
      if (!pidAlive(s.nodes.find((n) => n.name === pod.node)?.agentPid ?? 0)) return;
      const r = runPlugin(tools, pod.node, "DEL", pod);
      if (r.code !== 0) throw new Error(r.stdout.trim() || r.stderr.trim());
    });
    await attempt(`delete ${pod.name}`, () => deleteNamedNetns(pod.name));
  }
  for (const node of s.nodes) {
    await attempt(`stop agent of ${node.name}`, () => stopAgent(node.agentPid));
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

/** What each running agent's mesh looks like, from its /report. */
export function meshViews(tools: LabTools, s: LabState): MeshView[] {
  const out: MeshView[] = [];
  for (const n of s.nodes) {
    if (!pidAlive(n.agentPid)) continue;
    const r = inNs(n.netns, [...tools.weave, "report"]);
    if (r.code !== 0) continue;
    const router = (
      JSON.parse(r.stdout) as {
        Router?: {
          Peers: {
            NickName: string;
            Addresses: string[];
            Reachable: boolean;
            Connections: { Established: boolean }[];
          }[];
          Connections: { State: string }[];
        };
      }
    ).Router;
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
      throw new WeaveError(
        "E_LAB_MESH",
        `the mesh did not connect within ${timeoutMs / 1000}s: ${views.map((v) => `${v.node} reaches ${v.reachable} of ${running}`).join(", ")}`,
      );
    }
    await Bun.sleep(100);
  }
}

function findNode(s: LabState, node: string): LabNode {
  const n = s.nodes.find((x) => x.name === node || x.name === `${s.name}-${node}`);
  if (!n)
    throw new WeaveError(
      "E_NO_NODE",
      `lab "${s.name}" has no node "${node}" (nodes: ${s.nodes.map((x) => x.name).join(", ")})`,
    );
  return n;
}

/** `weave lab agent stop|start NODE`: stop or start one node's agent; lab.json keeps its pid. */
export async function labAgent(name: string, action: string, node: string, tools: LabTools): Promise<LabNode> {
  const s = readLab(name);
  if (!s) throw new WeaveError("E_NO_LAB", `no lab named "${name}"`);
  const n = findNode(s, node);
  if (action === "stop") {
    await stopAgent(n.agentPid);
  } else if (action === "start") {
    if (pidAlive(n.agentPid))
      throw new WeaveError("E_AGENT_RUNNING", `the agent of ${n.name} is already running (pid ${n.agentPid})`);
    n.agentPid = startAgent(
      tools,
      n,
      s.nodes.filter((x) => x !== n).map((x) => x.ip),
      s.ipallocRange,
    );
    saveLab(s);
    await waitAgentReady(tools, n);
  } else throw new WeaveError("E_USAGE", `unknown agent action "${action}" (stop, start)`);
  saveLab(s);
  return n;
}

const CUT_TABLE = "weavelabcut";

/** `weave lab cut|heal NODE`: drop or restore the node's mesh (TCP 6783) and VXLAN (UDP 6784) traffic. */
export function labCut(name: string, node: string, cut: boolean): LabNode {
  const s = readLab(name);
  if (!s) throw new WeaveError("E_NO_LAB", `no lab named "${name}"`);
  const n = findNode(s, node);
  const script = cut
    ? `add table inet ${CUT_TABLE}\ndelete table inet ${CUT_TABLE}\ntable inet ${CUT_TABLE} {\n` +
      ["input", "output"]
        .map(
          (h) =>
            `  chain ${h} { type filter hook ${h} priority -10; policy accept; tcp dport 6783 drop; tcp sport 6783 drop; udp dport 6784 drop; }\n`,
        )
        .join("") +
      "}\n"
    : `add table inet ${CUT_TABLE}\ndelete table inet ${CUT_TABLE}\n`;
  const r = inNs(n.netns, ["nft", "-f", "-"], { stdin: script });
  if (r.code !== 0) throw new WeaveError("E_NFT", `nft in ${n.netns}: ${r.stderr.trim()}`);
  return n;
}

/** Ping every pod from every pod; true where the ping went through. */
export function pingMatrix(s: LabState): { from: string; to: string; ok: boolean }[] {
  const out: { from: string; to: string; ok: boolean }[] = [];
  for (const a of s.pods)
    for (const b of s.pods) {
      if (a === b) continue;
      out.push({ from: a.name, to: b.name, ok: inNs(a.name, ["ping", "-c", "1", "-W", "2", b.ip]).code === 0 });
    }
  return out;
}

export { pidAlive };
