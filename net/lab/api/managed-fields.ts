/**
 * metadata.managedFields: which manager set which fields, as the API records it (one
 * entry per manager and operation, `fieldsType: FieldsV1`). An Apply entry owns the
 * fields of the applied configuration; an Update entry owns the fields its writes set or
 * changed, taken from whoever held them before. Field sets are written in the API's
 * FieldsV1 form: `f:<field>` for a field, `k:{"name":"c"}` for an item of a keyed list,
 * `v:"x"` for an item of a set-like list, `.` for a node owned as a whole.
 *
 * Not modelled: apply conflicts (a different manager's apply takes the fields over).
 */
import { deepEqual, type Doc, isObj, nowStamp } from "./json.ts";
import type { ResourceDef } from "./resources.ts";
import { kindSchema, propOf, type Schema } from "./schema.ts";

/** Fields no manager owns: identity and bookkeeping the server writes. */
const SERVER_META = new Set([
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "managedFields",
  "selfLink",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
]);

const SEP = "\u0000";

/** Every owned path of `o` (a path is its FieldsV1 tokens joined by NUL) with its value as JSON. */
export function leaves(o: unknown, schema: Schema | undefined, prefix: string[] = [], out = new Map<string, string>()) {
  if (isObj(o) && schema?.type !== "any") {
    const entries = Object.entries(o).filter(
      ([k]) => !(prefix.length === 1 && prefix[0] === "f:metadata" && SERVER_META.has(k)),
    );
    if (schema?.type === "map" || prefix.at(-1)?.startsWith("k:")) out.set(prefix.join(SEP), ".");
    if (entries.length === 0 && prefix.length) out.set(prefix.join(SEP), "{}");
    for (const [k, v] of entries) leaves(v, propOf(schema, k), [...prefix, `f:${k}`], out);
    return out;
  }
  if (Array.isArray(o) && schema?.type === "array" && o.length) {
    const key = schema.mergeKey;
    const setLike = !key && schema.strategy?.includes("merge");
    if (key || setLike) {
      for (const item of o) {
        const token = key && isObj(item) ? `k:${JSON.stringify({ [key]: item[key] })}` : `v:${JSON.stringify(item)}`;
        if (key) leaves(item, schema.items, [...prefix, token], out);
        else out.set([...prefix, token].join(SEP), JSON.stringify(item));
      }
      return out;
    }
  }
  out.set(prefix.join(SEP), JSON.stringify(o));
  return out;
}

/** The FieldsV1 tree of a set of paths. */
export function fieldsV1(paths: Iterable<string>): Doc {
  const owned = new Set(paths);
  const root: Doc = {};
  for (const p of owned) {
    let at = root;
    for (const t of p.split(SEP).filter(Boolean)) at = at[t] ??= {};
  }
  const markOwned = (node: Doc, path: string[], owned: Set<string>) => {
    for (const [k, child] of Object.entries(node)) {
      const here = [...path, k];
      if (Object.keys(child).length && owned.has(here.join(SEP))) child["."] = {};
      markOwned(child, here, owned);
    }
  };
  markOwned(root, [], owned);
  return root;
}

/** The paths an entry's FieldsV1 names (the inverse of fieldsV1). */
function pathsOf(tree: unknown, prefix: string[] = []): string[] {
  if (!isObj(tree)) return [];
  const children = Object.entries(tree).filter(([k]) => k !== ".");
  const self = prefix.length && (children.length === 0 || "." in tree) ? [prefix.join(SEP)] : [];
  return [...self, ...children.flatMap(([k, v]) => pathsOf(v, [...prefix, k]))];
}

/** What the owned fields of `o` are: its spec-like part, and status only for a status write. */
function ownedPart(d: ResourceDef, o: Doc, subresource?: string): Doc {
  const { apiVersion: _a, kind: _k, status, ...rest } = o;
  if (subresource === "status") return { status };
  return d.status ? rest : { ...rest, ...(status === undefined ? {} : { status }) };
}

export interface ManagedWrite {
  manager: string;
  operation: "Apply" | "Update";
  subresource?: string;
  /** For Apply: the applied configuration, whose fields the manager then owns. */
  applied?: Doc;
}

/** The managedFields of `next` after a write by `w` over `current` (undefined for a create). */
export function updateManagedFields(d: ResourceDef, current: Doc | undefined, next: Doc, w: ManagedWrite): Doc[] {
  const schema = kindSchema(d.kind);
  const before = leaves(current ? ownedPart(d, current, w.subresource) : {}, schema);
  const after = leaves(ownedPart(d, next, w.subresource), schema);
  const changed = new Set([...after].filter(([p, v]) => before.get(p) !== v).map(([p]) => p));
  const appliedPaths =
    w.operation === "Apply" && w.applied ? leaves(ownedPart(d, w.applied, w.subresource), schema) : undefined;
  // An apply owns what it applied and the object kept (unknown fields were dropped).
  const taken = appliedPaths ? new Set([...appliedPaths.keys()].filter((p) => after.has(p))) : changed;
  const entries = ((current?.metadata?.managedFields ?? []) as Doc[]).map((e) => ({ ...e }));
  const mine = (e: Doc) =>
    e.manager === w.manager && e.operation === w.operation && (e.subresource ?? "") === (w.subresource ?? "");
  const kept: Doc[] = [];
  for (const e of entries) {
    if (mine(e)) continue;
    const sameScope = (e.subresource ?? "") === (w.subresource ?? "");
    const left = pathsOf(e.fieldsV1).filter((p) => after.has(p) && !(sameScope && taken.has(p)));
    if (left.length) kept.push({ ...e, fieldsV1: fieldsV1(left) });
  }
  const previous = entries.find(mine);
  const stillMine = previous && w.operation === "Update" ? pathsOf(previous.fieldsV1).filter((p) => after.has(p)) : [];
  const owned = new Set([...stillMine, ...taken]);
  if (owned.size === 0) return kept;
  const entry: Doc = {
    manager: w.manager,
    operation: w.operation,
    apiVersion: d.group ? `${d.group}/${d.version}` : d.version,
    time: nowStamp(),
    fieldsType: "FieldsV1",
    fieldsV1: fieldsV1(owned),
    ...(w.subresource ? { subresource: w.subresource } : {}),
  };
  const unchanged = previous && deepEqual({ ...previous, time: undefined }, { ...entry, time: undefined });
  return [...kept, unchanged ? previous : entry];
}

/** The manager of a request: `fieldManager`, else the user agent's program name (`kubectl`). */
export function managerOf(q: URLSearchParams, userAgent: string | null): string {
  const given = q.get("fieldManager");
  if (given) return given;
  const program = (userAgent ?? "").split("/")[0]?.trim();
  return program || "unknown";
}
