/** Small helpers the checks share: building results, and blaming one node for failures between pairs. */
import type { CheckResult, Facts, NodeFacts, Status } from "./types.ts";

export const result = (
  name: string,
  status: Status,
  node: string | undefined,
  evidence: string,
  fix = "",
): CheckResult => ({
  name,
  status,
  ...(node ? { node } : {}),
  evidence,
  fix,
});

/** Nodes doctor looked at itself (not peers only known from a report). */
export const localNodes = (f: Facts): NodeFacts[] => f.nodes.filter((n) => !n.remote);

export const nodeByIp = (f: Facts, ip: string): NodeFacts | undefined => f.nodes.find((n) => n.ip === ip);

/** "a, b and c" */
export function list(items: string[], max = 6): string {
  const shown = items.slice(0, max);
  const more = items.length > max ? [`${items.length - max} more`] : [];
  const all = [...shown, ...more];
  return all.length <= 1 ? (all[0] ?? "") : `${all.slice(0, -1).join(", ")} and ${all.at(-1)}`;
}

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * Who to blame for failures between pairs of nodes: the one node every failed pair
 * involves, when there is exactly one (with three or more nodes, one broken node fails
 * every pair it is in, and only those). Otherwise each failed pair is reported under
 * its source node.
 */
export function blame<T extends { from: string; to: string }>(failed: T[]): { node?: string; pairs: T[] }[] {
  if (!failed.length) return [];
  const names = [...new Set(failed.flatMap((p) => [p.from, p.to]))];
  const common = names.filter((n) => failed.every((p) => p.from === n || p.to === n));
  if (common.length === 1) return [{ node: common[0], pairs: failed }];
  const bySource = new Map<string, T[]>();
  for (const p of failed) bySource.set(p.from, [...(bySource.get(p.from) ?? []), p]);
  // Two nodes failing each other: no way to tell which is at fault.
  if (common.length === 2 && names.length === 2) return [{ pairs: failed }];
  return [...bySource].map(([node, pairs]) => ({ node, pairs }));
}
