/**
 * The API's objects are JSON documents: the server handles them generically, as `Doc`,
 * with the few helpers every part needs (a deep copy, a deep comparison, path access).
 */

// biome-ignore lint/suspicious/noExplicitAny: API objects are schemaless JSON documents here; each part checks what it reads.
export type Doc = Record<string, any>;

export const isObj = (v: unknown): v is Doc => typeof v === "object" && v !== null && !Array.isArray(v);

export const clone = <T>(v: T): T => structuredClone(v);

/** Equal as JSON documents: a key holding `undefined` counts as absent. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (!isObj(a) || !isObj(b)) return false;
  const ka = Object.keys(a).filter((k) => a[k] !== undefined);
  const kb = Object.keys(b).filter((k) => b[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
}

/** The value at a dotted path (`spec.nodeName`), or undefined. */
export function pathGet(o: unknown, path: string): unknown {
  let at: unknown = o;
  for (const k of path.split(".")) at = isObj(at) ? at[k] : undefined;
  return at;
}

/** The current time as the API writes it: RFC 3339, whole seconds, UTC. */
export const nowStamp = (now = new Date()) => now.toISOString().replace(/\.\d+Z$/, "Z");
