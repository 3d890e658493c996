/**
 * The printers' shared formats: columns, ages (duration.HumanDuration), label maps and
 * label selectors as the upstream printers write them.
 */
import { type Doc, isObj } from "./json.ts";

export interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export const col = (name: string, type = "string", priority = 0, format = ""): Column => ({
  name,
  type,
  format,
  description: "",
  priority,
});
export const NAME = col("Name", "string", 0, "name");
export const AGE = col("Age");

/** kubernetes' duration.HumanDuration: 45s, 3m20s, 12m, 5h3m, 3d4h, 400d, 2y10d. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8)
    return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8)
    return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

/** The age of a timestamp as the printers write it; `<unknown>` without one. */
export const since = (stamp: string | undefined, now = Date.now()) =>
  stamp ? humanDuration(now - Date.parse(stamp)) : "<unknown>";

/** labels.FormatLabels: `a=b,c=d` sorted by key, `<none>` when empty. */
export function formatLabels(labels: Record<string, string> | undefined): string {
  const pairs = Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return pairs.length ? pairs.map(([k, v]) => `${k}=${v}`).join(",") : "<none>";
}

/** metav1.FormatLabelSelector: `app=x,tier in (a,b),!legacy`, sorted by key; `<none>` when empty. */
export function formatLabelSelector(sel: Doc | undefined): string {
  if (!isObj(sel)) return "<none>";
  const terms: { key: string; text: string }[] = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => ({
    key: k,
    text: `${k}=${v}`,
  }));
  for (const e of (sel.matchExpressions ?? []) as Doc[]) {
    const values = [...((e.values ?? []) as string[])].sort().join(",");
    const text =
      e.operator === "In"
        ? `${e.key} in (${values})`
        : e.operator === "NotIn"
          ? `${e.key} notin (${values})`
          : e.operator === "Exists"
            ? e.key
            : `!${e.key}`;
    terms.push({ key: e.key, text });
  }
  terms.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return terms.length ? terms.map((t) => t.text).join(",") : "<none>";
}
