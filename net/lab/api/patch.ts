/**
 * The API's patch formats: JSON merge patch (RFC 7386), strategic merge patch (list merge
 * keys from the schema, the `$patch`, `$setElementOrder`, `$deleteFromPrimitiveList` and
 * `$retainKeys` directives), JSON patch (RFC 6902), and what a server-side re-apply takes
 * away (fields the same manager applied before and no longer sends).
 */
import { clone, deepEqual, type Doc, isObj } from "./json.ts";
import { mergeKeyOf, propOf, type Schema } from "./schema.ts";

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  const out: Doc = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const SET_ORDER = "$setElementOrder/";
const DELETE_PRIMITIVE = "$deleteFromPrimitiveList/";

/** Strategic merge patch of `target` by `patch`; `schema` is the structure of the object patched. */
export function strategicMerge(target: unknown, patch: unknown, schema?: Schema): unknown {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === "replace") return stripDirectives(patch);
  if (patch.$patch === "delete") return undefined;
  const out: Doc = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) continue;
    const field = propOf(schema, k);
    if (v === null) delete out[k];
    else if (Array.isArray(v)) out[k] = mergeArray(out[k], v, schema, k);
    else if (isObj(v) && v.$patch === "delete") delete out[k];
    else out[k] = strategicMerge(out[k], v, field);
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith(DELETE_PRIMITIVE) && Array.isArray(v) && Array.isArray(out[k.slice(DELETE_PRIMITIVE.length)])) {
      const list = k.slice(DELETE_PRIMITIVE.length);
      out[list] = (out[list] as unknown[]).filter((x) => !v.includes(x));
    }
    if (k.startsWith(SET_ORDER) && Array.isArray(v) && Array.isArray(out[k.slice(SET_ORDER.length)])) {
      const list = k.slice(SET_ORDER.length);
      out[list] = reorder(out[list] as unknown[], v, mergeKeyOf(schema, list));
    }
  }
  if (Array.isArray(patch.$retainKeys)) {
    const keep = new Set(patch.$retainKeys as string[]);
    for (const k of Object.keys(out)) if (!keep.has(k)) delete out[k];
  }
  return out;
}

function mergeArray(current: unknown, patch: unknown[], parent: Schema | undefined, field: string): unknown[] {
  const s = propOf(parent, field);
  const merging = s?.type === "array" && s.strategy?.includes("merge");
  const replace = patch.some((i) => isObj(i) && i.$patch === "replace");
  if (!merging || !Array.isArray(current) || replace)
    return patch.filter((i) => !(isObj(i) && (i.$patch === "delete" || i.$patch === "replace"))).map(stripDirectives);
  const key = s.mergeKey;
  if (!key) return [...current, ...patch.filter((p) => !current.some((c) => deepEqual(c, p)))];
  const out = [...current];
  for (const item of patch) {
    const at = isObj(item) ? out.findIndex((c) => isObj(c) && c[key] === item[key]) : -1;
    if (isObj(item) && item.$patch === "delete") {
      if (at >= 0) out.splice(at, 1);
    } else if (at >= 0) out[at] = strategicMerge(out[at], item, s.items);
    else out.push(stripDirectives(item));
  }
  return out;
}

/** Puts the items `order` names first, in that order (a `$setElementOrder` directive). */
function reorder(items: unknown[], order: unknown[], key: string | undefined): unknown[] {
  const id = (x: unknown) => (key && isObj(x) ? x[key] : x);
  const wanted = order.map(id);
  const ranked = items.map((x) => ({ x, rank: wanted.findIndex((w) => deepEqual(w, id(x))) }));
  const known = ranked.filter((r) => r.rank >= 0).sort((a, b) => a.rank - b.rank);
  return [...known, ...ranked.filter((r) => r.rank < 0)].map((r) => r.x);
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const kept = Object.entries(v).filter(([k]) => !k.startsWith("$"));
  return Object.fromEntries(kept.map(([k, x]) => [k, stripDirectives(x)]));
}

/**
 * What a re-apply takes away: fields the manager applied last time and no longer sends,
 * as a strategic merge patch (nulls, `$patch: delete` for keyed list items) of `next`.
 */
export function applyPatch(prev: unknown, next: unknown, schema?: Schema): unknown {
  if (!isObj(prev) || !isObj(next)) return next;
  const out: Doc = {};
  for (const [k, v] of Object.entries(next)) out[k] = applyField(prev[k], v, schema, k);
  for (const k of Object.keys(prev)) if (!(k in next)) out[k] = null;
  return out;
}

function applyField(prev: unknown, next: unknown, parent: Schema | undefined, field: string): unknown {
  if (isObj(prev) && isObj(next)) return applyPatch(prev, next, propOf(parent, field));
  const key = mergeKeyOf(parent, field);
  if (!key || !Array.isArray(prev) || !Array.isArray(next)) return next;
  const items = propOf(parent, field);
  const itemSchema = items?.type === "array" ? items.items : undefined;
  const sameKey = (a: unknown, b: unknown) => isObj(a) && isObj(b) && a[key] === b[key];
  const gone = prev
    .filter((p) => !next.some((n) => sameKey(n, p)))
    .map((p) => ({ [key]: (p as Doc)[key], $patch: "delete" }));
  const kept = next.map((n) =>
    applyPatch(
      prev.find((p) => sameKey(p, n)),
      n,
      itemSchema,
    ),
  );
  return [...kept, ...gone];
}

/** RFC 6902 JSON patch: add, remove, replace, test, move, copy. */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error("a JSON patch is a list of operations");
  let out = clone(doc);
  for (const op of ops) {
    if (!isObj(op) || typeof op.path !== "string") throw new Error(`bad JSON patch operation ${JSON.stringify(op)}`);
    switch (op.op) {
      case "add":
      case "replace":
        out = pointerSet(out, op.path, clone(op.value), op.op);
        break;
      case "remove":
        out = pointerSet(out, op.path, undefined, "remove");
        break;
      case "test":
        if (!deepEqual(pointerGet(out, op.path), op.value)) throw new Error(`testing value ${op.path} failed`);
        break;
      case "move":
      case "copy": {
        const v = clone(pointerGet(out, op.from));
        if (op.op === "move") out = pointerSet(out, op.from, undefined, "remove");
        out = pointerSet(out, op.path, v, "add");
        break;
      }
      default:
        throw new Error(`unknown JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return out;
}

const unescapeToken = (t: string) => t.replace(/~1/g, "/").replace(/~0/g, "~");
const escapeToken = (t: string) => t.replace(/~/g, "~0").replace(/\//g, "~1");
const tokens = (path: string) => (path === "" ? [] : path.slice(1).split("/").map(unescapeToken));

function pointerGet(doc: unknown, path: string): unknown {
  let at: unknown = doc;
  for (const t of tokens(path)) {
    if (Array.isArray(at)) at = at[Number(t)];
    else if (isObj(at) && t in at) at = at[t];
    else throw new Error(`path ${path} does not exist`);
  }
  return at;
}

function pointerSet(doc: unknown, path: string, value: unknown, op: "add" | "replace" | "remove"): unknown {
  const ts = tokens(path);
  const last = ts.pop();
  if (last === undefined) return value;
  const parent = pointerGet(doc, ts.length ? `/${ts.map(escapeToken).join("/")}` : "");
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    const inRange = Number.isInteger(i) && i >= 0 && i <= parent.length && (op === "add" || i < parent.length);
    if (!inRange) throw new Error(`path ${path} does not exist`);
    if (op === "add") parent.splice(i, 0, value);
    else if (op === "replace") parent[i] = value;
    else parent.splice(i, 1);
  } else if (isObj(parent)) {
    if (op !== "add" && !(last in parent)) throw new Error(`path ${path} does not exist`);
    if (op === "remove") delete parent[last];
    else parent[last] = value;
  } else throw new Error(`path ${path} does not exist`);
  return doc;
}
