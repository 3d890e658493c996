/**
 * Facts about this node only, in the current network namespace (a node, or inside the
 * agent's hostNetwork pod): the agent through 127.0.0.1:6784, the kernel through `ip`,
 * `bridge` and `nft`, the CNI conf dir. The other peers are known only from the
 * agent's report (`remote`); they are probed from here: a TCP connect to their 6783,
 * and pings to one of their pods, found in the VXLAN FDB (a pod's MAC is 0a:58 and its
 * address, docs/datapath.md), from the node itself (its bridge address), small and at
 * the full overlay MTU. Pods here are pinged from the node; their namespaces are not
 * known, so their routes are not checked in this mode. With `npcUrl`, this node's weave npc
 * too (gather/npc.ts).
 */
import { DEFAULT_AGENT_URL } from "../../host/agent-client.ts";
import { ping, tcpConnect, type Exec } from "./exec.ts";
import { readCniDir, type GatherIO } from "./lab.ts";
import { parseAddrs, parseLinks, parseNftDrops, parseReport, parseRoutes } from "../parse.ts";
import { bridgeIp, VXLAN_DEVICE } from "../checks-node.ts";
import type { AgentReport, Facts, NodeFacts, Probe } from "../types.ts";
import { gatherNodeNpc } from "./npc.ts";

export const DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d";
/** At most this many local pods are pinged. */
const LOCAL_PINGS = 4;

/** A pod address from a MAC the agent derived from it (0a:58:a:b:c:d), else undefined. */
export function ipFromPodMac(mac: string): string | undefined {
  const m = /^0a:58:([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(mac);
  return m
    ? m
        .slice(1)
        .map((h) => parseInt(h, 16))
        .join(".")
    : undefined;
}

async function get(url: string, timeoutMs: number): Promise<{ status: number; body: string } | { error: string }> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { error: (e as { code?: string }).code ?? (e as Error).name };
  }
}

export type NodeGatherOptions = {
  agentUrl?: string;
  cniConfDir?: string;
  /** weave npc's /status and /metrics (DEFAULT_NPC_URL); without it, npc is not looked at. */
  npcUrl?: string;
  kubeconfig?: string;
};

export async function gatherNode(io: GatherIO, o: NodeGatherOptions = {}): Promise<Facts> {
  const { exec } = io;
  const now = io.now ?? Date.now;
  const base = o.agentUrl ?? DEFAULT_AGENT_URL;
  const run = async <T>(argv: string[], parse: (s: string) => T) => {
    const r = await exec(argv, { timeoutMs: 3000 });
    try {
      return r.code === 0 ? parse(r.stdout) : undefined;
    } catch {
      return undefined;
    }
  };
  io.progress("looking at the local agent and kernel");
  const [status, report, links, addrs, routes, nft, fdb] = await Promise.all([
    get(`${base}/status`, 3000),
    get(`${base}/report`, 3000),
    run(["ip", "-j", "-d", "link", "show"], parseLinks),
    run(["ip", "-j", "-4", "addr", "show"], parseAddrs),
    run(["ip", "-j", "-4", "route", "show", "table", "all"], parseRoutes),
    exec(["nft", "list", "ruleset"], { timeoutMs: 3000 }),
    run(["bridge", "-j", "fdb", "show", "dev", VXLAN_DEVICE], (s) => JSON.parse(s) as { mac: string; dst?: string }[]),
  ]);
  const agent: NodeFacts["agent"] = {};
  let rep: AgentReport | undefined;
  if ("error" in status || "error" in report)
    agent.error = `${base}: ${"error" in status ? status.error : (report as { error: string }).error}`;
  else {
    agent.running = true;
    agent.ready = status.status === 200;
    agent.statusText = status.body.trim().split("\n")[0];
    rep = parseReport(report.body);
    if (rep) agent.report = rep;
  }
  const router = rep?.Router;
  const name = router?.NickName || process.env.HOSTNAME || "this node";
  const self: NodeFacts = {
    name,
    ...(router?.Address ? { ip: router.Address } : {}),
    agent,
    links,
    addrs,
    routes,
    firewall:
      nft.code === 0
        ? { drops: parseNftDrops(nft.stdout) }
        : { drops: [], error: nft.stderr.trim() || `exit ${nft.code}` },
    cni: readCniDir(o.cniConfDir ?? DEFAULT_CNI_CONF_DIR),
  };
  const npc = o.npcUrl ? await gatherNodeNpc(exec, name, { url: o.npcUrl, kubeconfig: o.kubeconfig }) : undefined;
  if (npc) self.npc = npc.npc;
  const remotes: NodeFacts[] = (router?.Peers ?? [])
    .filter((p) => p.Name !== router!.Name)
    .map((p) => ({ name: p.NickName || p.Name, ip: p.Addresses[0]?.replace(/:\d+$/, ""), remote: true, agent: {} }));

  const jobs: Promise<Probe>[] = [];
  const add = (
    kind: Probe["kind"],
    to: string,
    src: string,
    dst: string,
    p: Promise<{ ok: boolean; detail: string }>,
  ) => jobs.push(p.then((r) => ({ kind, from: name, to, src, dst, ...r })));
  for (const o of (rep?.IPAM.Owned ?? []).slice(0, LOCAL_PINGS)) {
    const ip = o.Address.split("/")[0]!;
    add("ping-local", name, name, ip, ping(exec, undefined, ip));
  }
  const podOf = new Map<string, string>();
  for (const e of fdb ?? []) {
    const ip = ipFromPodMac(e.mac);
    if (e.dst && ip && !podOf.has(e.dst)) podOf.set(e.dst, ip);
  }
  const mtu = links?.find((l) => l.name === (rep?.Bridge?.Name ?? "weave"))?.mtu;
  const src = bridgeIp(self) ?? name;
  const pingTargets: [NodeFacts, string][] = [];
  for (const r of remotes) {
    if (!r.ip) continue;
    add("tcp-6783", r.name, name, `${r.ip}:6783`, tcpConnect(exec, undefined, r.ip, 6783));
    const pod = podOf.get(r.ip);
    if (pod) {
      pingTargets.push([r, pod]);
      add("ping", r.name, src, pod, ping(exec, undefined, pod));
    }
  }
  if (jobs.length) io.progress(`probing: ${jobs.length} pings and TCP connects`);
  const probes = await Promise.all(jobs);
  const df = pingTargets.filter(([r]) => probes.some((p) => p.kind === "ping" && p.to === r.name && p.ok));
  if (mtu && df.length) {
    io.progress(`probing: ${df.length} don't-fragment pings at the full MTU ${mtu}`);
    probes.push(
      ...(await Promise.all(
        df.map(([r, pod]) =>
          ping(exec, undefined, pod, mtu - 28).then(
            (x): Probe => ({ kind: "ping-df", from: name, to: r.name, src, dst: pod, ...x }),
          ),
        ),
      )),
    );
  }
  return {
    mode: "node",
    target: name,
    ...(rep?.IPAM.Range ? { range: rep.IPAM.Range } : {}),
    nodes: [self, ...remotes],
    pods: [],
    probes,
    ...(npc?.policy ? { policy: npc.policy } : {}),
    now: now(),
    hints: {
      startNpc: (node) =>
        `restart the weave-net pod of ${node}: kubectl -n kube-system delete pod -l name=weave-net --field-selector spec.nodeName=${node}`,
      npcLogs: (node) =>
        `kubectl -n kube-system logs -c weave-npc $(kubectl -n kube-system get pod -l name=weave-net --field-selector spec.nodeName=${node} -o name)`,
      startAgent: (node) =>
        `restart the weave agent of ${node}: kubectl -n kube-system delete pod -l name=weave-net --field-selector spec.nodeName=${node}`,
      agentLogs: (node) =>
        `kubectl -n kube-system logs -c weave $(kubectl -n kube-system get pod -l name=weave-net --field-selector spec.nodeName=${node} -o name)`,
      onNode: () => "",
    },
  };
}

export type { Exec };
