/**
 * Readers of what `weave npc` says about dropped connections (pure): its log lines
 * (net/npc/drops.ts writes them: `<time> weave-npc: blocked TCP 10.32.0.3:41234
 * (ns/client) -> 10.40.0.2:8080 (ns/server): <reason>`, and a line summing up what the
 * rate limit held back), grouped into the drops doctor lists, and its /metrics counter
 * weavenpc_blocked_connections_total{protocol,dport}.
 */

export type Drop = {
  at: number;
  protocol: string;
  from: string;
  to: string;
  dport?: number;
  reason: string;
};

export type DropGroup = { from: string; to: string; port: string; reason: string; count: number };

const ADDRESS = String.raw`(\S+?)(?::(\d+))?(?: \(([^)]+)\))?`;
const BLOCKED = new RegExp(String.raw`^(\S+) weave-npc: blocked (\S+) ${ADDRESS} -> ${ADDRESS}: (.*)$`);
const HELD_BACK = /^(\S+) weave-npc: blocked: (\d+) more connection\(s\)/;

/** The drops logged at or after `since` (ms), and how many more the log's rate limit held back. */
export function parseDropLines(lines: string[], since: number): { drops: Drop[]; heldBack: number } {
  const drops: Drop[] = [];
  let heldBack = 0;
  for (const line of lines) {
    const more = HELD_BACK.exec(line);
    if (more && Date.parse(more[1]!) >= since) heldBack += Number(more[2]);
    const m = BLOCKED.exec(line);
    if (!m) continue;
    const at = Date.parse(m[1]!);
    if (!(at >= since)) continue;
    const [, , protocol, srcIp, , srcPod, dstIp, dport, dstPod, reason] = m;
    drops.push({
      at,
      protocol: protocol!,
      from: srcPod ?? srcIp!,
      to: dstPod ?? dstIp!,
      ...(dport ? { dport: Number(dport) } : {}),
      reason: reason!,
    });
  }
  return { drops, heldBack };
}

/** Drops of the same pair, port and reason together, most frequent first. */
export function groupDrops(drops: Drop[]): DropGroup[] {
  const groups = new Map<string, DropGroup>();
  for (const d of drops) {
    const port = d.dport !== undefined ? `${d.dport}/${d.protocol}` : d.protocol;
    const key = `${d.from} ${d.to} ${port} ${d.reason}`;
    const g = groups.get(key) ?? { from: d.from, to: d.to, port, reason: d.reason, count: 0 };
    g.count++;
    groups.set(key, g);
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

/** weavenpc_blocked_connections_total by "PROTOCOL PORT" (labels in any order, as any Prometheus client writes them). */
export function parseBlockedMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  const sample = /^weavenpc_blocked_connections_total\{([^}]*)\} (\S+)/;
  for (const l of text.split("\n")) {
    const m = sample.exec(l.trim());
    if (!m) continue;
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const key = `${labels.protocol ?? "?"} ${labels.dport ?? "?"}`;
    out[key] = (out[key] ?? 0) + Number(m[2]);
  }
  return out;
}
