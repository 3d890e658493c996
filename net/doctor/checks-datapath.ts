/**
 * Which data path pod traffic between each pair of nodes takes (docs/datapath.md),
 * from each agent's /report `Router.DataPaths` (net/agent/report.ts `dataPaths`): the
 * fast one (kernel VXLAN on UDP 6784, in WireGuard on UDP 6785 with a password), or the
 * userspace sleeve on UDP 6783, which an agent falls back to when its heartbeats over
 * VXLAN go unanswered, and which carries traffic through a third node ("routed", `Via`)
 * when two nodes have no direct mesh connection.
 *
 * The sleeve warns, never fails: traffic flows, only slower. Both sides' views of a pair
 * are merged, so each pair is named once; pairs on the sleeve are blamed on the one node
 * every such pair involves (result.ts `blame`), as `tunnels` does for UDP 6785. Agents
 * older than the sleeve report no data paths: their side is left out, and with none
 * reporting the check passes saying so.
 */
import { blame, list, plural, result } from "./result.ts";
import type { CheckResult, Facts, NodeFacts } from "./types.ts";

const NAME = "datapath";
export const VXLAN_PORT = 6784;
export const WG_PORT = 6785;
export const SLEEVE_PORT = 6783;

/** One agent's view of its path to one peer. */
type Side = { from: string; to: string; path: "fastdp" | "sleeve"; via?: string; reason?: string; since?: number };
type Pair = { a: string; b: string; sides: Side[] };
type Judged = { from: string; to: string; pair: Pair };

const encryptionOn = (n: NodeFacts | undefined) => {
  const e = n?.agent.report?.Router?.Encryption;
  return e === true || e === "enabled";
};

/** The node doctor knows a peer as: by nickname (the lab's and node mode's names), else by peer name. */
function nodeName(f: Facts, name: string | undefined, nick: string | undefined): string {
  const n =
    f.nodes.find((x) => nick && x.name === nick) ?? f.nodes.find((x) => name && x.agent.report?.Router?.Name === name);
  return n?.name ?? (nick || name || "?");
}

/** The address a node is reached at: its facts, its own report, or any report's peer entry. */
function addressOf(f: Facts, name: string): string | undefined {
  const n = f.nodes.find((x) => x.name === name);
  if (n?.ip) return n.ip;
  if (n?.agent.report?.Router?.Address) return n.agent.report.Router.Address;
  for (const x of f.nodes)
    for (const p of x.agent.report?.Router?.Peers ?? [])
      if ((p.NickName || p.Name) === name && p.Addresses[0]) return p.Addresses[0].replace(/:\d+$/, "");
  return undefined;
}

const sinceMs = (iso: string | undefined) => {
  const t = iso ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(t) ? undefined : t;
};

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

const key = (a: string, b: string) => [a, b].sort().join(" <-> ");

/** What the fast path needs between two nodes: VXLAN, or WireGuard when either side encrypts. */
function fastPort(f: Facts, a: string, b: string): { port: number; text: string } {
  const sealed = [a, b].some((x) => encryptionOn(f.nodes.find((n) => n.name === x)));
  return sealed
    ? { port: WG_PORT, text: `UDP ${WG_PORT} (WireGuard)` }
    : { port: VXLAN_PORT, text: `UDP ${VXLAN_PORT} (VXLAN)` };
}

const addr = (f: Facts, n: string) => addressOf(f, n) ?? n;

/** "lab-n1 <-> lab-n2 on the sleeve for 5 min: <reason> (lab-n2 reports fastdp)" */
function sleeveText(f: Facts, p: Pair): string {
  const on = p.sides.filter((s) => s.path === "sleeve" && !s.via);
  const since = on.map((s) => s.since).filter((t): t is number => t !== undefined);
  // one line per distinct reason (the seconds in them aside), with who gives it
  const byReason = new Map<string, Side[]>();
  for (const s of on) {
    const k = (s.reason ?? "").replace(/\d+/g, "N");
    byReason.set(k, [...(byReason.get(k) ?? []), s]);
  }
  const said = [...byReason.values()]
    .map((ss) => `${ss[0]!.reason || "no reason given"} (seen from ${list(ss.map((s) => s.from))})`)
    .join("; ");
  const others = p.sides
    .filter((s) => !on.includes(s))
    .map((s) => `${s.from} reports ${s.via ? `a route through ${s.via}` : s.path}`);
  return (
    `${p.a} <-> ${p.b} on the sleeve${since.length ? ` for ${ago(f.now - Math.min(...since))}` : ""}: ${said}` +
    (others.length ? ` (${others.join(", ")})` : "")
  );
}

function routedText(p: Pair): string {
  const vias = [...new Set(p.sides.map((s) => s.via).filter((v): v is string => !!v))];
  const seen = p.sides.filter((s) => s.via).map((s) => s.from);
  return `${p.a} <-> ${p.b} have no direct connection: their traffic goes through ${list(vias.map((v) => `${v}'s`))} sleeve (seen from ${list(seen)})`;
}

export function checkDataPath(f: Facts): CheckResult[] {
  const routers = f.nodes.filter((n) => n.agent.report?.Router);
  if (!routers.length) return [];
  const reporting = routers.filter((n) => n.agent.report!.Router!.DataPaths);
  const silent = routers.filter((n) => !n.agent.report!.Router!.DataPaths).map((n) => n.name);
  if (!reporting.length)
    return [
      result(
        NAME,
        "pass",
        undefined,
        `not reported: ${routers.length === 1 ? "the agent reports" : `the ${plural(routers.length, "agent")} report`} no data paths (older than the sleeve fallback); nothing to judge`,
      ),
    ];

  const pairs = new Map<string, Pair>();
  for (const n of reporting) {
    for (const d of n.agent.report!.Router!.DataPaths!) {
      const to = nodeName(f, d.Name, d.NickName);
      if (to === n.name) continue;
      const via = d.Via || d.ViaNickName ? nodeName(f, d.Via, d.ViaNickName) : undefined;
      const side: Side = {
        from: n.name,
        to,
        path: d.Path === "sleeve" ? "sleeve" : "fastdp",
        ...(via && d.Path === "sleeve" ? { via } : {}),
        ...(d.Reason ? { reason: d.Reason } : {}),
        ...(sinceMs(d.Since) !== undefined ? { since: sinceMs(d.Since) } : {}),
      };
      const k = key(n.name, to);
      const [a, b] = [n.name, to].sort() as [string, string];
      const p = pairs.get(k) ?? { a, b, sides: [] };
      p.sides.push(side);
      pairs.set(k, p);
    }
  }

  const direct: Judged[] = [];
  const routed: Judged[] = [];
  const fast: Pair[] = [];
  for (const p of pairs.values()) {
    const d = p.sides.find((s) => s.path === "sleeve" && !s.via);
    const r = p.sides.find((s) => s.path === "sleeve" && s.via);
    if (d) direct.push({ from: d.from, to: d.to, pair: p });
    else if (r) routed.push({ from: r.from, to: r.to, pair: p });
    else fast.push(p);
  }

  const out: CheckResult[] = [];
  for (const g of blame(direct)) {
    const nodes = [...new Set(g.pairs.flatMap((j) => [j.pair.a, j.pair.b]))];
    const ports = new Set(g.pairs.map((j) => fastPort(f, j.pair.a, j.pair.b).port));
    const walls = nodes.flatMap((name) =>
      (f.nodes.find((x) => x.name === name)?.firewall?.drops ?? [])
        .filter((d) => d.proto === "udp" && ports.has(d.port))
        .map((d) => `nftables on ${name} drops UDP ${d.port}: "${d.rule}" (table ${d.table})`),
    );
    const evidence = [
      `${plural(g.pairs.length, "pair")} on the sleeve (userspace, UDP ${SLEEVE_PORT}: traffic flows, slower): ${list(
        g.pairs.map((j) => sleeveText(f, j.pair)),
        4,
      )}`,
      ...walls.slice(0, 2),
    ].join("; ");
    // one node blamed: "between its address and the others'", per port; else each pair
    const byPort = new Map<string, string[]>();
    for (const j of g.pairs) {
      const { a, b } = j.pair;
      const port = fastPort(f, a, b).text;
      const other = g.node ? (a === g.node ? b : a) : undefined;
      byPort.set(port, [...(byPort.get(port) ?? []), other ? addr(f, other) : `${addr(f, a)} and ${addr(f, b)}`]);
    }
    const opens = [...byPort].map(([port, ends]) =>
      g.node
        ? `open ${port} between ${addr(f, g.node)} (${g.node}) and ${list(ends)}`
        : ends.map((e) => `open ${port} between ${e}`).join("; "),
    );
    const fix =
      `${opens.join("; ")} (both ways)` +
      (g.node ? `; ${f.hints.onNode(g.node)}nft list ruleset shows what drops it on ${g.node}` : "") +
      "; the agents move the peers back to the fast path by themselves once 3 heartbeats in a row cross";
    out.push(result(NAME, "warn", g.node, evidence, fix));
  }

  for (const g of blame(routed)) {
    const evidence = `${plural(g.pairs.length, "pair")} routed through another node's sleeve (userspace, slower): ${list(
      g.pairs.map((j) => routedText(j.pair)),
      4,
    )}`;
    const fixes = g.pairs.map((j) => {
      const { a, b } = j.pair;
      const udp = fastPort(f, a, b).port;
      return `${a} and ${b} have no direct connection: open TCP ${SLEEVE_PORT} and UDP ${udp}/${SLEEVE_PORT} between them (${addr(f, a)} and ${addr(f, b)})`;
    });
    out.push(
      result(
        NAME,
        "warn",
        g.node,
        evidence,
        `${fixes.slice(0, 4).join("; ")}; see mesh-connections for why they do not connect`,
      ),
    );
  }

  const note = silent.length
    ? `; ${list(silent)} report${silent.length === 1 ? "s" : ""} no data paths (older agent)`
    : "";
  if (fast.length) {
    const sealed = fast.every((p) => fastPort(f, p.a, p.b).port === WG_PORT);
    const how = sealed ? "WireGuard" : "kernel VXLAN";
    const evidence =
      direct.length || routed.length
        ? `${plural(fast.length, "other pair")} on the fast datapath (${how})`
        : `every pair of nodes on the fast datapath (${how}): ${plural(fast.length, "pair")}`;
    out.push(result(NAME, "pass", undefined, evidence + note));
  } else if (!out.length)
    out.push(result(NAME, "pass", undefined, `no reachable peer reported to have a data path to judge${note}`));
  return out;
}
