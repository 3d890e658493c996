/**
 * Checks of the address ring (docs/ipam.md): every agent ready with no ring conflict,
 * space left, and no space held by a peer that no longer exists. "No longer exists" is
 * only certain in the lab (a peer whose nickname is no lab node, or an old identity of
 * a lab node); elsewhere a peer unreachable from every agent may just be down, so it is
 * a warning that names `weave rmpeer` for the case it is gone for good.
 */
import { localNodes, list, plural, result } from "./result.ts";
import type { AgentReport, CheckResult, Facts } from "./types.ts";

type Entry = NonNullable<AgentReport["IPAM"]["Entries"]>[number];

/** Below this share of the range free, the range is nearly exhausted. */
export const LOW_FREE_SHARE = 0.01;

export function checkIpamReady(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    const ipam = n.agent.report?.IPAM;
    if (!ipam) continue;
    const conflicts = ipam.Conflicts ?? [];
    if (conflicts.length) {
      const fix =
        "this agent's data dir belongs to another ring (another cluster, or a seed made apart); " +
        "stop the agent, move its data dir (weave.db) aside and start it again to join this ring";
      out.push(result("ipam-ready", "fail", n.name, `ring conflict: ${list(conflicts, 2)}`, fix));
    } else if (ipam.Status !== "ready") {
      const why = /consensus/.test(ipam.Status)
        ? "every peer of --peers / KUBE_PEERS must be up and reachable for the first division of the range (see mesh-peers)"
        : "a peer with free space must be reachable to give some (see mesh-peers and ipam-space)";
      out.push(result("ipam-ready", "fail", n.name, `IPAM not ready: ${ipam.Status}`, why));
    } else out.push(result("ipam-ready", "pass", n.name, `ready, ring ${ipam.Ring ?? "?"}, range ${ipam.Range}`));
  }
  return out;
}

/** Every entry any agent reports, the freshest view of each peer first (its own report). */
function entries(f: Facts): Map<string, Entry> {
  const m = new Map<string, Entry>();
  for (const n of f.nodes) {
    const me = n.agent.report?.Router?.Name;
    for (const e of n.agent.report?.IPAM.Entries ?? []) if (!m.has(e.Peer) || e.Peer === me) m.set(e.Peer, e);
  }
  return m;
}

export function checkIpamSpace(f: Facts): CheckResult[] {
  const all = [...entries(f).values()];
  const size =
    f.nodes.map((n) => n.agent.report?.IPAM.RangeNumIPs).find((x) => x) ?? all.reduce((s, e) => s + e.Size, 0);
  if (!all.length || !size) return [];
  const free = all.reduce((s, e) => s + e.Free, 0);
  const out: CheckResult[] = [];
  const fix =
    "delete pods that are gone (their addresses come back), or move to a wider IPALLOC_RANGE (a new range needs every agent's data dir reset)";
  if (free === 0)
    out.push(result("ipam-space", "fail", undefined, `the range is exhausted: 0 of ${size} addresses free`, fix));
  else if (free < size * LOW_FREE_SHARE)
    out.push(result("ipam-space", "warn", undefined, `only ${free} of ${size} addresses free`, fix));
  else
    out.push(
      result("ipam-space", "pass", undefined, `${free} of ${size} addresses free over ${plural(all.length, "peer")}`),
    );
  for (const e of all) {
    if (e.Asking && free > 0)
      out.push(
        result(
          "ipam-space",
          "warn",
          e.Nickname,
          `${e.Nickname} has ${e.Free} free and is asking its peers for space`,
          "normal for a moment after a node joins; if it lasts, a peer with free space is not reachable from it (see mesh-peers)",
        ),
      );
  }
  return out;
}

export function checkIpamOrphans(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  const names = new Map(f.nodes.map((n) => [n.name, n.agent.report?.Router?.Name]));
  const observers = f.nodes.filter((n) => n.agent.report?.Router);
  const reachable = (peer: string) =>
    observers.some((o) => o.agent.report!.Router!.Peers.some((p) => p.Name === peer && p.Reachable));
  const anyNode = f.nodes.find((n) => n.agent.report?.Router && !n.remote)?.name ?? f.nodes[0]?.name ?? "any node";
  const rmpeer = (e: Entry) =>
    `if ${e.Nickname} is gone for good, hand its space to the others: ${f.hints.onNode(anyNode)}weave rmpeer ${e.Peer}`;
  for (const e of entries(f).values()) {
    if (e.Size <= 0) continue;
    const current = names.get(e.Nickname);
    if (f.mode === "lab" && !names.has(e.Nickname)) {
      out.push(
        result(
          "ipam-orphans",
          "fail",
          undefined,
          `peer ${e.Peer} (${e.Nickname}) is no node of this lab and holds ${e.Size} addresses (${list(e.Spans, 2)})`,
          `hand its space to the others: ${f.hints.onNode(anyNode)}weave rmpeer ${e.Peer}`,
        ),
      );
    } else if (f.mode === "lab" && current && current !== e.Peer) {
      const why =
        `an old identity of ${e.Nickname}, peer ${e.Peer}, still holds ${e.Size} addresses ` +
        `(the node now runs as ${current}, e.g. after its data dir was reset)`;
      const fix = `hand the old identity's space to the others: ${f.hints.onNode(anyNode)}weave rmpeer ${e.Peer}`;
      out.push(result("ipam-orphans", "fail", e.Nickname, why, fix));
    } else if (observers.length && !reachable(e.Peer)) {
      out.push(
        result(
          "ipam-orphans",
          "warn",
          names.has(e.Nickname) ? e.Nickname : undefined,
          `peer ${e.Peer} (${e.Nickname}) is unreachable and holds ${e.Size} addresses: nobody can give them out while it is away`,
          rmpeer(e),
        ),
      );
    }
  }
  if (!out.length && observers.length)
    out.push(result("ipam-orphans", "pass", undefined, "all address space is held by reachable peers of this cluster"));
  return out;
}
