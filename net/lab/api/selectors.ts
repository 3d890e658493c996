/**
 * List selectors as the API parses them. Label selectors: `k=v`, `k==v`, `k!=v`, `k`,
 * `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas (a `!=`, `notin` or `!k` term
 * also matches objects without the label). Field selectors: `path=v`, `path==v`,
 * `path!=v` on dotted paths (`spec.nodeName`, `involvedObject.uid`), joined by commas.
 */
import { badRequest } from "./errors.ts";
import { type Doc, pathGet } from "./json.ts";

export type Match = (o: Doc) => boolean;

/** Splits on commas outside parentheses (`a in (x,y),b`). */
function terms(sel: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const c of sel) {
    if (c === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
      continue;
    }
    if (c === "(") depth++;
    if (c === ")") depth--;
    cur += c;
  }
  out.push(cur.trim());
  return out.filter(Boolean);
}

const SET_TERM = /^(\S+)\s+(in|notin)\s+\((.*)\)$/;
const EQUALITY_TERM = /^([^!=\s]+)\s*(==|=|!=)\s*(.*)$/;
const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;

function labelTerm(t: string): Match {
  const get = (o: Doc, k: string): string | undefined => o.metadata?.labels?.[k];
  const checkKey = (k: string) => {
    if (!KEY.test(k)) throw badRequest(`unable to parse requirement: invalid label key "${k}"`);
    return k;
  };
  const set = SET_TERM.exec(t);
  if (set) {
    const key = checkKey(set[1]!);
    const values = set[3]!.split(",").map((v) => v.trim());
    const isIn = set[2] === "in";
    return (o) => {
      const v = get(o, key);
      return isIn ? v !== undefined && values.includes(v) : v === undefined || !values.includes(v);
    };
  }
  const eq = EQUALITY_TERM.exec(t);
  if (eq) {
    const key = checkKey(eq[1]!);
    const value = eq[3]!.trim();
    return eq[2] === "!=" ? (o) => get(o, key) !== value : (o) => get(o, key) === value;
  }
  if (t.startsWith("!")) {
    const key = checkKey(t.slice(1).trim());
    return (o) => get(o, key) === undefined;
  }
  const key = checkKey(t);
  return (o) => get(o, key) !== undefined;
}

/** A label selector as a predicate; 400 BadRequest on a term that does not parse. */
export function labelMatcher(sel: string | null): Match {
  const ms = terms(sel ?? "").map(labelTerm);
  return (o) => ms.every((f) => f(o));
}

/** A field selector as a predicate; 400 BadRequest on a term that does not parse. */
export function fieldMatcher(sel: string | null): Match {
  const ms = terms(sel ?? "").map((t): Match => {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(t);
    if (!m) throw badRequest(`invalid field selector: ${t}`);
    const path = m[1]!.trim();
    const value = m[3]!.trim();
    const get = (o: Doc) => String(pathGet(o, path) ?? "");
    return m[2] === "!=" ? (o) => get(o) !== value : (o) => get(o) === value;
  });
  return (o) => ms.every((f) => f(o));
}

/** A LabelSelector object (`matchLabels`, `matchExpressions`) as a predicate on labels. */
export function selectorMatches(sel: Doc | undefined, labels: Record<string, string> = {}): boolean {
  if (!sel) return false;
  const byLabels = Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpressions = ((sel.matchExpressions ?? []) as Doc[]).every((e) => {
    const v = labels[e.key];
    const values = (e.values ?? []) as string[];
    if (e.operator === "In") return v !== undefined && values.includes(v);
    if (e.operator === "NotIn") return v === undefined || !values.includes(v);
    if (e.operator === "Exists") return v !== undefined;
    return v === undefined;
  });
  return byLabels && byExpressions;
}
