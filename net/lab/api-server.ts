/**
 * A stand-in Kubernetes API server for tests (no real one can be installed here).
 *
 * It follows the API conventions our code relies on, for a fixed table of kinds, over
 * plain http on 127.0.0.1 (the kubeconfig it writes sets `insecure-skip-tls-verify`,
 * which is what lets `@kubernetes/client-node` 2.x talk http at all):
 * - objects get uid, creationTimestamp and a resourceVersion from one global counter;
 *   a write that changes nothing is a no-op (no new resourceVersion, no watch event);
 * - List kinds (`<Kind>List`, list resourceVersion; items without kind/apiVersion),
 *   equality-based label and field selectors, no paging (`limit` is ignored);
 * - Status errors: 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale
 *   resourceVersion (PUT, PATCH, DELETE preconditions), 400/422/415 on bad input;
 * - PATCH: merge, strategic merge (merge keys for the common lists, `$patch: delete`),
 *   JSON patch (add/remove/replace/test/move/copy) and server-side apply;
 * - `status` subresources: the main resource ignores status changes and vice versa;
 * - watch streams (`?watch=true`): current objects as ADDED without a resourceVersion,
 *   else the history after it, then live events; 410 Expired (as an ERROR event) for a
 *   resourceVersion older than the kept history (see `store.compact()`); a stream
 *   starts with a blank line (Bun.serve sends no headers before body bytes);
 * - discovery (`/api`, `/apis`, group versions) and `/version`.
 * Not modelled: field ownership and apply conflicts (`force` is accepted and ignored;
 * a re-apply removes what the same manager applied before and no longer sends),
 * admission, defaulting beyond metadata, graceful deletion, finalizers, garbage
 * collection by owner (deleting a Namespace does delete what is in it), auth.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parse as parseYaml } from "yaml";

// Kubernetes objects are JSON documents; the stand-in handles them generically.
type Doc = Record<string, any>;

/** One kind the stand-in serves. */
export interface ResourceDef {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  /** Has a `status` subresource: the main resource then ignores `.status` changes. */
  status: boolean;
  /** Keeps `metadata.generation`, bumped when anything but metadata and status changes. */
  generation?: boolean;
}

const def = (
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced: boolean,
  status = false,
  generation = false,
): ResourceDef => ({
  group,
  version,
  kind,
  plural,
  singular: kind.toLowerCase(),
  namespaced,
  status,
  generation,
});

/** The kinds served. */
export const RESOURCES: readonly ResourceDef[] = [
  def("", "v1", "Node", "nodes", false, true),
  def("", "v1", "Namespace", "namespaces", false, true),
  def("", "v1", "Pod", "pods", true, true, true),
  def("", "v1", "Service", "services", true, true),
  def("", "v1", "ConfigMap", "configmaps", true),
  def("", "v1", "Secret", "secrets", true),
  def("", "v1", "ServiceAccount", "serviceaccounts", true),
  def("", "v1", "Event", "events", true),
  def("apps", "v1", "DaemonSet", "daemonsets", true, true, true),
  def("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
  def("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
  def("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
  def("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
  def("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, false, true),
];

const groupVersion = (d: ResourceDef) => (d.group ? `${d.group}/${d.version}` : d.version);

function findDef(apiVersion: string, kind: string): ResourceDef {
  const d = RESOURCES.find((r) => groupVersion(r) === apiVersion && r.kind === kind);
  if (!d) throw new Error(`k8s stand-in: no kind ${kind} in ${apiVersion}`);
  return d;
}

// ---------------------------------------------------------------- errors

/** An API failure, answered as a `Status` object. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Doc,
  ) {
    super(message);
    this.name = "ApiError";
  }
  toStatus(): Doc {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      details: this.details,
      code: this.code,
    };
  }
}

const qualified = (d: ResourceDef) => (d.group ? `${d.plural}.${d.group}` : d.plural);
const details = (d: ResourceDef, name?: string) => ({ name, group: d.group || undefined, kind: d.plural });
const notFound = (d: ResourceDef, name: string) =>
  new ApiError(404, "NotFound", `${qualified(d)} "${name}" not found`, details(d, name));
const conflict = (d: ResourceDef, name: string) =>
  new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(d)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(d, name),
  );
const badRequest = (message: string) => new ApiError(400, "BadRequest", message);
const invalid = (d: ResourceDef, name: string | undefined, message: string) =>
  new ApiError(422, "Invalid", `${d.kind} "${name ?? ""}" is invalid: ${message}`, details(d, name));

// ---------------------------------------------------------------- JSON helpers

const isObj = (v: unknown): v is Doc => typeof v === "object" && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (!isObj(a) || !isObj(b)) return false;
  const ka = Object.keys(a).filter((k) => a[k] !== undefined);
  const kb = Object.keys(b).filter((k) => b[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
}

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

/** patchMergeKey of the lists strategic merge patch merges by key (the rest are replaced). */
function mergeKeyOf(field: string, items: unknown[]): string | undefined {
  if (field === "ports") return items.some((i) => isObj(i) && "containerPort" in i) ? "containerPort" : "port";
  return (
    {
      conditions: "type",
      addresses: "type",
      containers: "name",
      initContainers: "name",
      ephemeralContainers: "name",
      env: "name",
      volumes: "name",
      volumeMounts: "mountPath",
      volumeDevices: "devicePath",
      imagePullSecrets: "name",
      taints: "key",
      hostAliases: "ip",
      ownerReferences: "uid",
    } as Record<string, string>
  )[field];
}

/** Strategic merge patch, as far as tests need it: merge keys, `$patch: delete|replace`; other directives dropped. */
export function strategicMerge(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === "replace") return stripDirectives(patch);
  const out: Doc = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) continue;
    if (v === null) delete out[k];
    else if (Array.isArray(v) && Array.isArray(out[k]) && mergeKeyOf(k, [...v, ...out[k]]))
      out[k] = mergeList(out[k], v, mergeKeyOf(k, [...v, ...out[k]])!);
    else if (Array.isArray(v)) out[k] = v.filter((i) => !(isObj(i) && i.$patch === "delete")).map(stripDirectives);
    else out[k] = strategicMerge(out[k], v);
  }
  return out;
}

function mergeList(current: unknown[], patch: unknown[], key: string): unknown[] {
  const out = [...current];
  for (const item of patch) {
    const at = isObj(item) ? out.findIndex((c) => isObj(c) && c[key] === item[key]) : -1;
    if (isObj(item) && item.$patch === "delete") {
      if (at >= 0) out.splice(at, 1);
    } else if (at >= 0) out[at] = strategicMerge(out[at], item);
    else out.push(stripDirectives(item));
  }
  return out;
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([k]) => !k.startsWith("$"))
      .map(([k, x]) => [k, stripDirectives(x)]),
  );
}

/**
 * What a re-apply takes away: fields the manager applied last time and no longer sends,
 * as a strategic merge patch (nulls, `$patch: delete` for keyed list items) merged into `next`.
 */
function applyPatch(prev: unknown, next: unknown, field = ""): unknown {
  if (isObj(prev) && isObj(next)) {
    const out: Doc = {};
    for (const [k, v] of Object.entries(next)) out[k] = applyPatch(prev[k], v, k);
    for (const k of Object.keys(prev)) if (!(k in next)) out[k] = null;
    return out;
  }
  const key = Array.isArray(prev) && Array.isArray(next) ? mergeKeyOf(field, [...prev, ...next]) : undefined;
  if (!key || !Array.isArray(prev) || !Array.isArray(next)) return next;
  const gone = prev
    .filter((p) => isObj(p) && !next.some((n) => isObj(n) && n[key] === p[key]))
    .map((p) => ({ [key]: (p as Doc)[key], $patch: "delete" }));
  return [
    ...next.map((n) =>
      applyPatch(
        prev.find((p) => isObj(p) && isObj(n) && p[key] === n[key]),
        n,
      ),
    ),
    ...gone,
  ];
}

/** RFC 6902 JSON patch: add, remove, replace, test, move, copy. */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error("a JSON patch is a list of operations");
  let out = clone(doc);
  for (const op of ops) {
    if (!isObj(op) || typeof op.path !== "string") throw new Error(`bad JSON patch operation ${JSON.stringify(op)}`);
    switch (op.op) {
      case "add":
        out = pointerSet(out, op.path, clone(op.value), "add");
        break;
      case "replace":
        out = pointerSet(out, op.path, clone(op.value), "replace");
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

const tokens = (path: string) =>
  path === ""
    ? []
    : path
        .slice(1)
        .split("/")
        .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));

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
  if (ts.length === 0) return value;
  const last = ts.pop()!;
  const parent = pointerGet(doc, `/${ts.map((t) => t.replace(/~/g, "~0").replace(/\//g, "~1")).join("/")}`);
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (op !== "add" && i >= parent.length))
      throw new Error(`path ${path} does not exist`);
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

// ---------------------------------------------------------------- selectors

type Match = (o: Doc) => boolean;

/** Splits on commas outside parentheses (`a in (x,y),b`). */
function terms(sel: string): string[] {
  const out: string[] = [];
  let depth = 0,
    cur = "";
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
  if (cur.trim()) out.push(cur.trim());
  return out.filter(Boolean);
}

/** Label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`. */
export function labelMatcher(sel: string | null): Match {
  const ms = terms(sel ?? "").map((t): Match => {
    const get = (o: Doc, k: string): string | undefined => o.metadata?.labels?.[k];
    let m: RegExpMatchArray | null;
    if ((m = t.match(/^(\S+)\s+(in|notin)\s+\((.*)\)$/))) {
      const [, k, op, vs] = m as unknown as [string, string, string, string];
      const set = vs.split(",").map((v) => v.trim());
      return (o) => (op === "in" ? set.includes(get(o, k) ?? "\0") : !set.includes(get(o, k) ?? "\0"));
    }
    if ((m = t.match(/^([^!=\s]+)\s*(==|=|!=)\s*(.*)$/))) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      return (o) => (op === "!=" ? get(o, k) !== v.trim() : get(o, k) === v.trim());
    }
    if (t.startsWith("!")) return (o) => get(o, t.slice(1).trim()) === undefined;
    return (o) => get(o, t) !== undefined;
  });
  return (o) => ms.every((f) => f(o));
}

/** Field selector: `path=v`, `path==v`, `path!=v` on dotted paths (`metadata.name`, `spec.nodeName`). */
export function fieldMatcher(sel: string | null): Match {
  const ms = terms(sel ?? "").map((t): Match => {
    const m = t.match(/^([^!=]+)(==|=|!=)(.*)$/);
    if (!m) throw badRequest(`invalid field selector: ${t}`);
    const [, path, op, v] = m as unknown as [string, string, string, string];
    const get = (o: Doc) => String(path.split(".").reduce<unknown>((x, k) => (isObj(x) ? x[k] : undefined), o) ?? "");
    return (o) => (op === "!=" ? get(o) !== v : get(o) === v);
  });
  return (o) => ms.every((f) => f(o));
}

// ---------------------------------------------------------------- store

/** A watch event as the API streams it. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "ERROR";
  object: Doc;
}

interface Change {
  rv: number;
  def: ResourceDef;
  event: WatchEvent;
}
interface Watcher {
  def: ResourceDef;
  namespace?: string;
  match: Match;
  send: (e: WatchEvent) => void;
}

const HISTORY = 10_000;
const keyOf = (d: ResourceDef, ns: string | undefined, name: string) => `${d.group}/${d.plural}/${ns ?? ""}/${name}`;
const nowStamp = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");
const withoutRv = (o: Doc) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });

/**
 * The objects, the global resourceVersion counter, the change history and the watchers.
 * Tests use `put`/`get`/`delete`/`list` to arrange and inspect state; these emit watch
 * events like API writes do. Everything handed out is a copy.
 */
export class Store {
  private objects = new Map<string, Doc>();
  private history: Change[] = [];
  private floor = 0;
  private rv = 0;
  private watchers = new Set<Watcher>();
  /** Last config each field manager applied, per object: what a re-apply may take away. */
  readonly applied = new Map<string, Map<string, unknown>>();

  /** The current (latest) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Creates or replaces an object (apiVersion, kind, metadata.name required), unconditionally. */
  put(obj: Doc): Doc {
    const d = findDef(obj.apiVersion, obj.kind);
    const body = clone(obj);
    const current = this.read(d, body.metadata?.namespace, body.metadata?.name);
    if (current) delete body.metadata.resourceVersion;
    return current ? this.update(d, current, body, "store") : this.create(d, body, body.metadata?.namespace);
  }

  /** One object, or undefined. */
  get(apiVersion: string, kind: string, name: string, namespace?: string): Doc | undefined {
    const o = this.read(findDef(apiVersion, kind), namespace, name);
    return o && clone(o);
  }

  /** All objects of a kind (in a namespace, if given), oldest first. */
  list(apiVersion: string, kind: string, namespace?: string): Doc[] {
    return this.items(findDef(apiVersion, kind), namespace).map(clone);
  }

  /** Deletes an object; returns it, or undefined when there was none. */
  delete(apiVersion: string, kind: string, name: string, namespace?: string): Doc | undefined {
    const d = findDef(apiVersion, kind);
    return this.read(d, namespace, name) ? clone(this.remove(d, namespace, name)) : undefined;
  }

  /** Forgets the change history: a watch from an older resourceVersion then gets 410 Expired. */
  compact(): void {
    this.history = [];
    this.floor = this.rv;
  }

  read(d: ResourceDef, ns: string | undefined, name: string): Doc | undefined {
    return this.objects.get(keyOf(d, d.namespaced ? ns : undefined, name));
  }

  items(d: ResourceDef, ns?: string): Doc[] {
    return [...this.objects.values()]
      .filter((o) => o.apiVersion === groupVersion(d) && o.kind === d.kind && (!ns || o.metadata.namespace === ns))
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
  }

  /** Creates from a request body; `ns` is the namespace of the request path. */
  create(d: ResourceDef, body: Doc, ns: string | undefined): Doc {
    if (body.kind !== undefined && body.kind !== d.kind)
      throw badRequest(`the kind of the object (${body.kind}) does not match the resource (${d.kind})`);
    const o: Doc = { ...body, apiVersion: groupVersion(d), kind: d.kind, metadata: { ...(body.metadata ?? {}) } };
    const m = o.metadata;
    if (!m.name && m.generateName) m.name = m.generateName + Math.random().toString(36).slice(2, 7);
    if (!m.name) throw invalid(d, undefined, "metadata.name: Required value: name or generateName is required");
    if (d.namespaced) {
      if (m.namespace && ns && m.namespace !== ns)
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      m.namespace = ns ?? m.namespace;
      if (!m.namespace) throw badRequest("a namespace is required");
      if (!this.read(findDef("v1", "Namespace"), undefined, m.namespace))
        throw notFound(findDef("v1", "Namespace"), m.namespace);
    } else delete m.namespace;
    if (this.read(d, m.namespace, m.name))
      throw new ApiError(409, "AlreadyExists", `${qualified(d)} "${m.name}" already exists`, details(d, m.name));
    Object.assign(m, { uid: crypto.randomUUID(), creationTimestamp: nowStamp() });
    if (d.generation) m.generation = 1;
    if (d.kind === "Namespace") o.status = { phase: "Active", ...(o.status ?? {}) };
    return this.commit("ADDED", d, o);
  }

  /**
   * Replaces `current` with `next` (a full object): 409 on a stale resourceVersion;
   * `sub` "status" takes only `.status`, otherwise `.status` is kept if `d.status`.
   */
  update(d: ResourceDef, current: Doc, next: Doc, sub?: string): Doc {
    const name = current.metadata.name;
    if (next.metadata?.name !== undefined && next.metadata.name !== name)
      throw badRequest(`the name of the object (${next.metadata.name}) does not match the name on the URL (${name})`);
    const rv = next.metadata?.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== current.metadata.resourceVersion) throw conflict(d, name);
    let o: Doc;
    if (sub === "status") o = { ...current, status: next.status };
    else {
      const fixed = {
        uid: current.metadata.uid,
        creationTimestamp: current.metadata.creationTimestamp,
        name,
        namespace: current.metadata.namespace,
        generation: current.metadata.generation,
      };
      o = {
        ...next,
        apiVersion: current.apiVersion,
        kind: current.kind,
        metadata: { ...(next.metadata ?? {}), ...fixed },
      };
      if (d.status && sub !== "store") o.status = current.status;
      if (o.status === undefined) delete o.status;
      if (d.generation && !deepEqual(specOf(o), specOf(current)))
        o.metadata.generation = (current.metadata.generation ?? 0) + 1;
    }
    if (deepEqual(withoutRv(o), withoutRv(current))) return current;
    return this.commit("MODIFIED", d, o);
  }

  /** Deletes (a Namespace takes what is in it along). */
  remove(d: ResourceDef, ns: string | undefined, name: string): Doc {
    const current = this.read(d, ns, name);
    if (!current) throw notFound(d, name);
    if (d.kind === "Namespace") {
      for (const o of [...this.objects.values()]) {
        if (o.metadata.namespace === name) this.remove(findDef(o.apiVersion, o.kind), name, o.metadata.name);
      }
    }
    return this.commit("DELETED", d, clone(current));
  }

  /**
   * Sends what a watch from `since` must see, then follows. Without `since` (or "0")
   * the current objects come as ADDED. Returns the unsubscribe function, or "expired".
   */
  subscribe(w: Watcher, since?: string): (() => void) | "expired" {
    if (since === undefined || since === "" || since === "0") {
      for (const o of this.items(w.def, w.namespace)) if (w.match(o)) w.send({ type: "ADDED", object: clone(o) });
    } else {
      const n = Number(since);
      if (!Number.isInteger(n) || n < this.floor) return "expired";
      for (const c of this.history) if (c.rv > n && this.wants(w, c)) w.send(clone(c.event));
    }
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  private wants(w: Watcher, c: Change): boolean {
    return (
      c.def === w.def && (!w.namespace || c.event.object.metadata.namespace === w.namespace) && w.match(c.event.object)
    );
  }

  private commit(type: WatchEvent["type"], d: ResourceDef, o: Doc): Doc {
    o.metadata.resourceVersion = String(++this.rv);
    const key = keyOf(d, o.metadata.namespace, o.metadata.name);
    if (type === "DELETED") {
      this.objects.delete(key);
      this.applied.delete(key);
    } else this.objects.set(key, o);
    const change = { rv: this.rv, def: d, event: { type, object: clone(o) } };
    this.history.push(change);
    if (this.history.length > HISTORY) this.floor = this.history.shift()!.rv;
    for (const w of this.watchers) if (this.wants(w, change)) w.send(clone(change.event));
    return o;
  }
}

const specOf = (o: Doc) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !["metadata", "status", "apiVersion", "kind"].includes(k)));

// ---------------------------------------------------------------- HTTP

/** One request the stand-in answered. */
export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  contentType: string | null;
}

interface Target {
  def: ResourceDef;
  namespace?: string;
  name?: string;
  sub?: string;
}

/** Maps a resource path to what it names, or undefined. */
function target(segs: string[]): Target | undefined {
  let gv: string, rest: string[];
  if (segs[0] === "api" && segs.length >= 2) [gv, rest] = [segs[1]!, segs.slice(2)];
  else if (segs[0] === "apis" && segs.length >= 3) [gv, rest] = [`${segs[1]}/${segs[2]}`, segs.slice(3)];
  else return undefined;
  const inGv = RESOURCES.filter((r) => groupVersion(r) === gv);
  const nsd =
    rest[0] === "namespaces" && rest.length >= 3 ? inGv.find((r) => r.namespaced && r.plural === rest[2]) : undefined;
  if (nsd) return rest.length <= 5 ? { def: nsd, namespace: rest[1], name: rest[3], sub: rest[4] } : undefined;
  const d = inGv.find((r) => r.plural === rest[0]);
  if (!d || rest.length > 3 || (d.namespaced && rest.length > 1)) return undefined;
  return { def: d, name: rest[1], sub: rest[2] };
}

function discovery(segs: string[]): Doc | undefined {
  const groups = [...new Set(RESOURCES.filter((r) => r.group).map((r) => r.group))];
  const gvOf = (g: string) => ({ groupVersion: `${g}/v1`, version: "v1" });
  const path = segs.join("/");
  if (path === "version")
    return { major: "1", minor: "31", gitVersion: "v1.31.0-weave-stand-in", platform: "linux/amd64" };
  if (path === "api")
    return {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "127.0.0.1" }],
    };
  if (path === "apis")
    return {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: groups.map((g) => ({ name: g, versions: [gvOf(g)], preferredVersion: gvOf(g) })),
    };
  if (segs[0] === "apis" && segs.length === 2 && groups.includes(segs[1]!))
    return {
      kind: "APIGroup",
      apiVersion: "v1",
      name: segs[1],
      versions: [gvOf(segs[1]!)],
      preferredVersion: gvOf(segs[1]!),
    };
  const gv =
    segs[0] === "api" && segs.length === 2
      ? segs[1]
      : segs[0] === "apis" && segs.length === 3
        ? `${segs[1]}/${segs[2]}`
        : undefined;
  const defs = RESOURCES.filter((r) => groupVersion(r) === gv);
  if (!defs.length) return undefined;
  const verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
  const resources = defs.flatMap((r) => [
    { name: r.plural, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs },
    ...(r.status
      ? [
          {
            name: `${r.plural}/status`,
            singularName: "",
            namespaced: r.namespaced,
            kind: r.kind,
            verbs: ["get", "patch", "update"],
          },
        ]
      : []),
  ]);
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion: gv, resources };
}

const json = (status: number, body: unknown) => Response.json(body, { status });

const readBody = async (req: Request, yaml = false) => parseBody(await req.text(), yaml);

function parseBody(text: string, yaml = false): unknown {
  try {
    return yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid ${yaml ? "YAML" : "JSON"}: ${(e as Error).message}`);
  }
}

/** The running stand-in: its address, kubeconfig, store and controls. */
export interface ApiServer {
  url: string;
  port: number;
  /** A kubeconfig file for the stand-in (a temp file, removed by `stop()`). */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  store: Store;
  requests: RequestRecord[];
  /** Whether it is answering. */
  readonly isUp: boolean;
  /** Stops answering: open watches end, new connections are refused. */
  down(): Promise<void>;
  /** Answers again, on the same port, with the same store. */
  up(): Promise<void>;
  /** Down for good; removes the temp files. */
  stop(): Promise<void>;
}

/** Options of the stand-in. */
export interface ApiServerOptions {
  /** Namespaces that exist at start (default: default, kube-system, kube-public, kube-node-lease). */
  namespaces?: string[];
  /** Websocket endpoints (e.g. pods/exec, tests/support/k8s-exec.ts); without it, none. */
  websocket?: WebSocketRoute;
}

// ---- websocket endpoints (added for the doctor's in-pod probes) ----
/**
 * A websocket endpoint a test plugs in: `route` looks at an upgrade request and returns
 * the socket's data and the subprotocol to answer with, or undefined to answer it as a
 * plain request; `handler` then serves the socket (Bun's websocket handlers).
 */
export interface WebSocketRoute {
  route(req: Request, url: URL, store: Store): { data: unknown; protocol?: string } | undefined;
  handler: import("bun").WebSocketHandler<any>;
}
// ---- end websocket endpoints ----

/** Starts the stand-in on 127.0.0.1 and an ephemeral port. */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const store = new Store();
  for (const ns of opts.namespaces ?? ["default", "kube-system", "kube-public", "kube-node-lease"])
    store.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
  const requests: RequestRecord[] = [];
  const streams = new Set<() => void>();
  const handler = new Handler(store, streams);
  let port = 0;
  let server: ReturnType<typeof Bun.serve> | undefined;
  const serve = () => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port,
      idleTimeout: 0,
      fetch: (req, srv) => {
        const url = new URL(req.url);
        requests.push({
          method: req.method,
          path: url.pathname,
          query: url.search,
          contentType: req.headers.get("content-type"),
        });
        // websocket endpoints (added for the doctor's in-pod probes)
        const ws =
          opts.websocket && req.headers.get("upgrade")?.toLowerCase() === "websocket"
            ? opts.websocket.route(req, url, store)
            : undefined;
        if (
          ws &&
          srv.upgrade(req, { data: ws.data, headers: ws.protocol ? { "Sec-WebSocket-Protocol": ws.protocol } : {} })
        )
          return undefined;
        return handler.handle(req, url);
      },
      ...(opts.websocket ? { websocket: opts.websocket.handler } : {}),
    } as Parameters<typeof Bun.serve>[0]);
    port = server.port!;
  };
  serve();
  const url = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), "weave-k8s-"));
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, kubeconfigYaml(url));
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfigPath);
  const down = async () => {
    for (const close of [...streams]) close();
    await server?.stop(true);
    server = undefined;
  };
  return {
    url,
    port,
    kubeconfigPath,
    kubeConfig,
    store,
    requests,
    get isUp() {
      return server !== undefined;
    },
    down,
    up: async () => void (server ?? serve()),
    stop: async () => {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A kubeconfig for a plain-http server (`insecure-skip-tls-verify` is what the client needs to allow http). */
export function kubeconfigYaml(server: string, namespace = "default"): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "current-context: stand-in",
    "clusters:",
    "- name: stand-in",
    "  cluster:",
    `    server: ${server}`,
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: tester",
    "  user:",
    "    token: stand-in-token",
    "contexts:",
    "- name: stand-in",
    "  context:",
    "    cluster: stand-in",
    "    user: tester",
    `    namespace: ${namespace}`,
    "",
  ].join("\n");
}

/** The request handler: routes, verbs, patches and watches over a Store. */
class Handler {
  constructor(
    private store: Store,
    private streams: Set<() => void>,
  ) {}

  async handle(req: Request, url: URL): Promise<Response> {
    try {
      const segs = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
      if (["healthz", "livez", "readyz"].includes(segs.join("/"))) return new Response("ok");
      const t = target(segs);
      if (!t) {
        const doc = req.method === "GET" ? discovery(segs) : undefined;
        return doc
          ? json(200, doc)
          : json(404, new ApiError(404, "NotFound", "the server could not find the requested resource").toStatus());
      }
      if (t.sub !== undefined && (t.sub !== "status" || !t.def.status))
        throw new ApiError(404, "NotFound", "the server could not find the requested resource");
      return await (t.name === undefined ? this.collection(req, url, t) : this.object(req, url, t, t.name));
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, "InternalError", `stand-in: ${(e as Error).message}`);
      return json(err.code, err.toStatus());
    }
  }

  private async collection(req: Request, url: URL, t: Target): Promise<Response> {
    const q = url.searchParams;
    const match: Match = (
      (l, f) => (o: Doc) =>
        l(o) && f(o)
    )(labelMatcher(q.get("labelSelector")), fieldMatcher(q.get("fieldSelector")));
    if (req.method === "GET" && ["true", "1"].includes(q.get("watch") ?? "")) return this.watch(t, match, q);
    if (req.method === "GET") return json(200, this.listDoc(t, this.store.items(t.def, t.namespace).filter(match)));
    if (req.method === "POST") {
      if (t.def.namespaced && !t.namespace)
        throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
      const body = await readBody(req);
      if (!isObj(body)) throw badRequest("the request body is not an object");
      return json(201, this.store.create(t.def, body, t.namespace));
    }
    if (req.method === "DELETE") {
      const gone = this.store
        .items(t.def, t.namespace)
        .filter(match)
        .map((o) => this.store.remove(t.def, o.metadata.namespace, o.metadata.name));
      return json(200, this.listDoc(t, gone));
    }
    throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  private listDoc(t: Target, items: Doc[]): Doc {
    const bare = items.map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
    return {
      kind: `${t.def.kind}List`,
      apiVersion: groupVersion(t.def),
      metadata: { resourceVersion: this.store.resourceVersion },
      items: bare,
    };
  }

  private async object(req: Request, url: URL, t: Target, name: string): Promise<Response> {
    const current = this.store.read(t.def, t.namespace, name);
    const q = url.searchParams;
    switch (req.method) {
      case "GET":
        if (!current) throw notFound(t.def, name);
        return json(200, current);
      case "PUT": {
        if (!current) throw notFound(t.def, name);
        const body = await readBody(req);
        if (!isObj(body)) throw badRequest("the request body is not an object");
        return json(200, this.store.update(t.def, current, body, t.sub));
      }
      case "PATCH":
        return this.patch(req, q, t, name, current);
      case "DELETE": {
        if (!current) throw notFound(t.def, name);
        const text = await req.text();
        const pre = text ? (parseBody(text) as Doc | null)?.preconditions : undefined;
        if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion)
          throw conflict(t.def, name);
        if (pre?.uid && pre.uid !== current.metadata.uid) throw conflict(t.def, name);
        return json(200, this.store.remove(t.def, t.namespace, name));
      }
    }
    throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  private async patch(
    req: Request,
    q: URLSearchParams,
    t: Target,
    name: string,
    current: Doc | undefined,
  ): Promise<Response> {
    const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
    if (type === "application/apply-patch+yaml") return this.apply(req, q, t, name, current);
    const merge = {
      "application/merge-patch+json": mergePatch,
      "application/strategic-merge-patch+json": strategicMerge,
      "application/json-patch+json": jsonPatch,
    }[type];
    if (!merge)
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
      );
    if (!current) throw notFound(t.def, name);
    const patch = await readBody(req);
    let next: unknown;
    try {
      next = merge(current, patch);
    } catch (e) {
      throw invalid(t.def, name, (e as Error).message);
    }
    if (!isObj(next)) throw invalid(t.def, name, "the patched object is not an object");
    return json(200, this.store.update(t.def, current, next, t.sub));
  }

  /** Server-side apply, approximated: create, else strategic merge plus removal of what this manager no longer applies. */
  private async apply(
    req: Request,
    q: URLSearchParams,
    t: Target,
    name: string,
    current: Doc | undefined,
  ): Promise<Response> {
    const manager = q.get("fieldManager");
    if (!manager)
      throw new ApiError(
        422,
        "Invalid",
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
      );
    const body = await readBody(req, true);
    if (!isObj(body)) throw badRequest("the apply body is not an object");
    if (body.apiVersion !== groupVersion(t.def) || body.kind !== t.def.kind)
      throw badRequest(
        `apply body has apiVersion/kind ${body.apiVersion}/${body.kind}, the URL is ${groupVersion(t.def)}/${t.def.kind}`,
      );
    if (body.metadata?.name !== name)
      throw badRequest(`the name of the object (${body.metadata?.name}) does not match the name on the URL (${name})`);
    const key = keyOf(t.def, t.def.namespaced ? t.namespace : undefined, name);
    const remember = (o: Doc) => {
      this.store.applied.set(key, (this.store.applied.get(key) ?? new Map()).set(manager, clone(body)));
      return o;
    };
    if (!current) return json(201, remember(this.store.create(t.def, body, t.namespace)));
    const prev = this.store.applied.get(key)?.get(manager) ?? {};
    const next = strategicMerge(current, applyPatch(prev, body)) as Doc;
    next.metadata.resourceVersion = body.metadata?.resourceVersion ?? current.metadata.resourceVersion;
    return json(200, remember(this.store.update(t.def, current, next, t.sub)));
  }

  private watch(t: Target, match: Match, q: URLSearchParams): Response {
    const enc = new TextEncoder();
    const timeout = Number(q.get("timeoutSeconds") ?? 0);
    let cleanup = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const send = (e: WatchEvent) => controller.enqueue(enc.encode(`${JSON.stringify(e)}\n`));
        // Bun.serve holds the response headers until the first body bytes, and a client's
        // watch() only returns once it has them: a blank line (JSON decoders skip it) flushes.
        controller.enqueue(enc.encode("\n"));
        const unsub = this.store.subscribe(
          { def: t.def, namespace: t.namespace, match, send },
          q.get("resourceVersion") ?? undefined,
        );
        if (unsub === "expired") {
          send({
            type: "ERROR",
            object: new ApiError(
              410,
              "Expired",
              `too old resource version: ${q.get("resourceVersion")} (${this.store.resourceVersion})`,
            ).toStatus(),
          });
          controller.close();
          return;
        }
        const timer = timeout > 0 ? setTimeout(() => cleanup(), timeout * 1000) : undefined;
        cleanup = () => {
          unsub();
          clearTimeout(timer);
          this.streams.delete(cleanup);
          try {
            controller.close();
          } catch {
            /* already closed by the client */
          }
        };
        this.streams.add(cleanup);
      },
      cancel: () => cleanup(),
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  }
}
