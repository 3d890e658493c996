/**
 * Facts about a lab, gathered from the root namespace with lab.json: each node's agent
 * (pid, /status, /report through its namespace), its links, addresses, routes and
 * nftables ruleset, its CNI conf dir and the tail of its agent log; its weave npc
 * (gather/npc.ts); each pod's eth0
 * and default route; then the probes, in two rounds: pings on each node and between
 * every ordered pair of nodes plus TCP connects to 6783, then, for the pairs whose
 * ping went through, a don't-fragment ping at the full pod MTU.
 *
 * A node's probe endpoint is its first pod with an address that no NetworkPolicy
 * isolates, else the node itself (whose bridge address is in the pod range): a lab
 * without pods still gets its cross-node datapath tested, and a policy's drops are
 * never taken for the network's.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { netnsPath } from "../../host/netns.ts";
import type { LabState } from "../../lab/state.ts";
import { pidAlive } from "../../host/process.ts";
import { agentGetInNetns, ping, tcpConnect, type Exec } from "./exec.ts";
import { parseAddrs, parseHttp, parseLinks, parseNftDrops, parseReport, parseRoutes } from "../parse.ts";
import { bridgeIp } from "../checks-node.ts";
import type { Facts, NodeFacts, PodFacts, Probe } from "../types.ts";
import { isolatedAddresses } from "../../policy/state.ts";
import { gatherLabNpc } from "./npc.ts";

export type GatherIO = { exec: Exec; progress(line: string): void; now?: () => number };

/** The last `max` bytes of a file, as lines (the first, maybe partial, dropped). */
export function tailLines(path: string, max = 64 * 1024): string[] {
  const size = statSync(path).size;
  const fd = openSync(path, "r");
  try {
    const len = Math.min(size, max);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const lines = buf.toString("utf8").split("\n");
    return (len < size ? lines.slice(1) : lines).filter(Boolean);
  } finally {
    closeSync(fd);
  }
}

export function readCniDir(dir: string): NodeFacts["cni"] {
  try {
    const names = readdirSync(dir);
    return {
      dir,
      files: names.map((name) => {
        try {
          return { name, text: readFileSync(join(dir, name), "utf8") };
        } catch {
          return { name };
        }
      }),
    };
  } catch (e) {
    return {
      dir,
      files: [],
      error: `cannot read ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    };
  }
}

async function jsonOf<T>(exec: Exec, netns: string, argv: string[], parse: (s: string) => T): Promise<T | undefined> {
  const r = await exec(argv, { netns, timeoutMs: 3000 });
  if (r.code !== 0) return undefined;
  try {
    return parse(r.stdout);
  } catch {
    return undefined;
  }
}

async function gatherNode(s: LabState, n: LabState["nodes"][number], exec: Exec): Promise<NodeFacts> {
  const ns = netnsPath(n.netns);
  const running = pidAlive(n.agentPid);
  const [status, report, links, addrs, routes, nft] = await Promise.all([
    running ? agentGetInNetns(exec, ns, "/status") : Promise.resolve(undefined),
    running ? agentGetInNetns(exec, ns, "/report") : Promise.resolve(undefined),
    jsonOf(exec, ns, ["ip", "-j", "-d", "link", "show"], parseLinks),
    jsonOf(exec, ns, ["ip", "-j", "-4", "addr", "show"], parseAddrs),
    jsonOf(exec, ns, ["ip", "-j", "-4", "route", "show", "table", "all"], parseRoutes),
    exec(["nft", "list", "ruleset"], { netns: ns, timeoutMs: 3000 }),
  ]);
  const agent: NodeFacts["agent"] = { running, pid: n.agentPid };
  if (running) {
    const st = status?.raw ? parseHttp(status.raw) : undefined;
    const rp = report?.raw ? parseHttp(report.raw) : undefined;
    if (!st || !rp) agent.error = status?.error ?? report?.error ?? "not an HTTP answer";
    else {
      agent.ready = st.status === 200;
      agent.statusText = st.body.trim().split("\n")[0];
      agent.report = parseReport(rp.body);
    }
  }
  const logPath = join(n.dataDir, "agent.log");
  let log: NodeFacts["log"];
  try {
    log = { path: logPath, lines: tailLines(logPath) };
  } catch (e) {
    log = { path: logPath, lines: [], error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
  return {
    name: n.name,
    ip: n.ip,
    agent,
    links,
    addrs,
    routes,
    firewall:
      nft.code === 0
        ? { drops: parseNftDrops(nft.stdout) }
        : { drops: [], error: nft.stderr.trim() || `exit ${nft.code}` },
    cni: n.cniConfDir
      ? readCniDir(n.cniConfDir)
      : {
          dir: "",
          files: [],
          error: `lab ${s.name} records no CNI conf dir for ${n.name} (it was brought up by an older weave)`,
        },
    log,
  };
}

async function gatherPod(p: LabState["pods"][number], exec: Exec): Promise<PodFacts> {
  const base: PodFacts = {
    name: p.name,
    node: p.node,
    containerId: p.containerId,
    ...(p.ip ? { expectedIp: p.ip } : {}),
  };
  const [addr, route] = await Promise.all([
    exec(["ip", "-j", "-4", "addr", "show", "dev", "eth0"], { netns: p.netns, timeoutMs: 3000 }),
    exec(["ip", "-j", "-4", "route", "show", "default"], { netns: p.netns, timeoutMs: 3000 }),
  ]);
  if (addr.code !== 0) return { ...base, error: (addr.stderr.trim() || `exit ${addr.code}`).split("\n").at(-1) };
  try {
    const link = (JSON.parse(addr.stdout) as { mtu: number }[])[0];
    const a = parseAddrs(addr.stdout)[0];
    const gw = route.code === 0 ? parseRoutes(route.stdout).find((r) => r.gateway)?.gateway : undefined;
    return { ...base, ...(a ? { ip: a.ip } : {}), ...(link ? { mtu: link.mtu } : {}), ...(gw ? { gateway: gw } : {}) };
  } catch (e) {
    return { ...base, error: `unreadable ip output: ${(e as Error).message}` };
  }
}

type Endpoint = { node: string; netns: string; name: string; ip?: string; mtu?: number };

/**
 * A don't-fragment ping at the source's full MTU. A path MTU the source cached from an
 * earlier drop (10 minutes, kernel default) would refuse it locally and hide whether
 * the path is fixed: in the lab, whose pods are doctor's own test subjects, that cache
 * is flushed and the ping tried again, and the evidence says so.
 */
async function fullSizePing(exec: Exec, a: Endpoint, dst: string) {
  const r = await ping(exec, a.netns, dst, a.mtu! - 28);
  if (r.cachedMtu === undefined) return r;
  await exec(["ip", "route", "flush", "cache"], { netns: a.netns, timeoutMs: 2000 });
  const { cachedMtu: _, ...again } = await ping(exec, a.netns, dst, a.mtu! - 28);
  return { ...again, detail: `${again.detail} (after flushing a cached path MTU of ${r.cachedMtu})` };
}

/** Gather everything doctor checks about lab `s`. */
export async function gatherLab(s: LabState, io: GatherIO): Promise<Facts> {
  const { exec } = io;
  const now = io.now ?? Date.now;
  let t = now();
  const secs = () => {
    const d = ((now() - t) / 1000).toFixed(1);
    t = now();
    return `${d} s`;
  };
  io.progress(`looking at the agents and kernels of ${s.nodes.length} node(s) and ${s.pods.length} pod(s)`);
  const [nodes, pods, npc] = await Promise.all([
    Promise.all(s.nodes.map((n) => gatherNode(s, n, exec))),
    Promise.all(s.pods.map((p) => gatherPod(p, exec))),
    gatherLabNpc(s, exec),
  ]);
  for (const n of nodes) {
    const facts = npc.npc.get(n.name);
    if (facts) n.npc = facts;
  }
  io.progress(`  done in ${secs()}`);

  // a pod a policy isolates drops pings by design: such pods are neither probed nor probe
  const isolated = npc.policy?.view ? isolatedAddresses(npc.policy.view) : new Set<string>();
  const probeable = (p: PodFacts) => !!p.ip && !isolated.has(p.ip);
  const skipped = pods.filter((p) => p.ip && !probeable(p)).length;
  if (skipped) io.progress(`  ${skipped} pod(s) isolated by NetworkPolicies are left out of the pings`);
  const ep = (n: NodeFacts): Endpoint => {
    const lab = s.nodes.find((x) => x.name === n.name)!;
    const pod = pods.find((p) => p.node === n.name && probeable(p));
    const labPod = pod && s.pods.find((x) => x.name === pod.name);
    if (pod && labPod) return { node: n.name, netns: labPod.netns, name: pod.name, ip: pod.ip, mtu: pod.mtu };
    return {
      node: n.name,
      netns: netnsPath(lab.netns),
      name: n.name,
      ip: bridgeIp(n),
      mtu: n.links?.find((l) => l.name === (n.agent.report?.Bridge?.Name ?? "weave"))?.mtu,
    };
  };
  const eps = nodes.map(ep);
  const jobs: Promise<Probe>[] = [];
  const probe = (
    kind: Probe["kind"],
    a: Endpoint,
    to: string,
    dst: string,
    run: Promise<{ ok: boolean; detail: string }>,
  ) => jobs.push(run.then((r) => ({ kind, from: a.node, to, src: a.name, dst, ...r })));
  for (const n of nodes) {
    const mine = pods.filter((p) => p.node === n.name && probeable(p));
    const a = eps.find((e) => e.node === n.name)!;
    for (const p of mine) if (p.name !== a.name) probe("ping-local", a, n.name, p.ip!, ping(exec, a.netns, p.ip!));
    const labNode = s.nodes.find((x) => x.name === n.name)!;
    if (mine[0])
      probe(
        "ping-local",
        { node: n.name, netns: netnsPath(labNode.netns), name: n.name },
        n.name,
        mine[0].ip!,
        ping(exec, netnsPath(labNode.netns), mine[0].ip!),
      );
  }
  const pairs = eps.flatMap((a) => eps.filter((b) => b !== a).map((b) => [a, b] as const));
  for (const [a, b] of pairs) {
    if (a.ip && b.ip) probe("ping", a, b.node, b.ip, ping(exec, a.netns, b.ip));
    const from = s.nodes.find((x) => x.name === a.node)!;
    const to = s.nodes.find((x) => x.name === b.node)!;
    probe(
      "tcp-6783",
      { ...a, netns: netnsPath(from.netns), name: from.name },
      to.name,
      `${to.ip}:6783`,
      tcpConnect(exec, netnsPath(from.netns), to.ip, 6783),
    );
  }
  io.progress(`probing: ${jobs.length} pings and TCP connects on and between nodes`);
  const probes = await Promise.all(jobs);
  io.progress(`  done in ${secs()}`);

  const df: Promise<Probe>[] = [];
  for (const [a, b] of pairs) {
    if (!a.mtu || !b.ip || !probes.some((p) => p.kind === "ping" && p.from === a.node && p.to === b.node && p.ok))
      continue;
    df.push(
      fullSizePing(exec, a, b.ip).then((r) => ({
        kind: "ping-df" as const,
        from: a.node,
        to: b.node,
        src: a.name,
        dst: b.ip!,
        ...r,
      })),
    );
  }
  if (df.length) {
    io.progress(`probing: ${df.length} don't-fragment pings at the full pod MTU`);
    probes.push(...(await Promise.all(df)));
    io.progress(`  done in ${secs()}`);
  }
  const range = s.ipallocRange ?? nodes.map((n) => n.agent.report?.IPAM.Range).find(Boolean);
  return {
    mode: "lab",
    target: s.name,
    ...(range ? { range } : {}),
    nodes,
    pods,
    probes,
    ...(npc.policy ? { policy: npc.policy } : {}),
    now: now(),
    hints: {
      startAgent: (node) => `start its agent: weave lab agent start ${node} --name ${s.name}`,
      agentLogs: (node) => join(s.nodes.find((n) => n.name === node)?.dataDir ?? "", "agent.log"),
      onNode: (node) => `ip netns exec ${node} `,
      startNpc: (node) =>
        `weave lab npc start ${node} --name ${s.name} (stop it first if it hangs: weave lab npc stop ${node})`,
      npcLogs: (node) => join(s.nodes.find((n) => n.name === node)?.dataDir ?? "", "npc.log"),
    },
  };
}
