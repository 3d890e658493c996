/**
 * The objects, the global resourceVersion counter, the change history and the watchers.
 *
 * The store keeps API semantics that do not depend on who writes: uid, creationTimestamp
 * and a resourceVersion from one counter; a write that changes nothing is a no-op (no new
 * resourceVersion, no watch event); 409 on a stale resourceVersion; `status` subresources;
 * metadata.generation; deleting a Namespace deletes what is in it. What a request adds
 * (defaults, validation, managedFields) is the handler's (admission.ts). Tests and the
 * lab's kubelet use `put`/`get`/`delete`/`list` to arrange and inspect state; these emit
 * watch events like API writes do. Everything handed out is a copy.
 */
import { alreadyExists, badRequest, conflict, invalid, notFound } from "./errors.ts";
import { clone, deepEqual, type Doc, nowStamp } from "./json.ts";
import { findDef, groupVersion, type ResourceDef } from "./resources.ts";
import type { Match } from "./selectors.ts";

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

/** A subscriber of changes: a watch request, or the lab's kubelet. */
export interface Watcher {
  def: ResourceDef;
  namespace?: string;
  match: Match;
  send: (e: WatchEvent) => void;
}

/** Options of a write: a dry run checks and answers but stores nothing. */
export interface WriteOptions {
  dryRun?: boolean;
}

const HISTORY = 10_000;

export const keyOf = (d: ResourceDef, ns: string | undefined, name: string) =>
  `${d.group}/${d.plural}/${ns ?? ""}/${name}`;

const withoutRv = (o: Doc) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });

const specOf = (o: Doc) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !["metadata", "status", "apiVersion", "kind"].includes(k)));

const NAMESPACE = findDef("v1", "Namespace");

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

  /** Deletes an object at once (also one being deleted gracefully); returns it, or undefined when there was none. */
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
    const gv = groupVersion(d);
    return [...this.objects.values()]
      .filter((o) => o.apiVersion === gv && o.kind === d.kind && (!ns || o.metadata.namespace === ns))
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
  }

  /** Creates from a request body; `ns` is the namespace of the request path. */
  create(d: ResourceDef, body: Doc, ns: string | undefined, opts: WriteOptions = {}): Doc {
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
      if (!this.read(NAMESPACE, undefined, m.namespace)) throw notFound(NAMESPACE, m.namespace);
    } else delete m.namespace;
    if (this.read(d, m.namespace, m.name)) throw alreadyExists(d, m.name);
    Object.assign(m, { uid: crypto.randomUUID(), creationTimestamp: nowStamp() });
    delete m.resourceVersion;
    if (d.generation) m.generation = 1;
    if (d.kind === "Namespace") o.status = { phase: "Active", ...(o.status ?? {}) };
    return opts.dryRun ? o : this.commit("ADDED", d, o);
  }

  /**
   * Replaces `current` with `next` (a full object): 409 on a stale resourceVersion;
   * `sub` "status" takes only `.status`, otherwise `.status` is kept if `d.status`
   * ("store", the test and kubelet path, takes everything).
   */
  update(d: ResourceDef, current: Doc, next: Doc, sub?: string, opts: WriteOptions = {}): Doc {
    const name = current.metadata.name;
    if (next.metadata?.name !== undefined && next.metadata.name !== name)
      throw badRequest(`the name of the object (${next.metadata.name}) does not match the name on the URL (${name})`);
    const rv = next.metadata?.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== current.metadata.resourceVersion) throw conflict(d, name);
    let o: Doc;
    if (sub === "status") o = { ...current, status: next.status, metadata: this.statusMeta(current, next) };
    else {
      const fixed = {
        uid: current.metadata.uid,
        creationTimestamp: current.metadata.creationTimestamp,
        name,
        namespace: current.metadata.namespace,
        generation: current.metadata.generation,
        deletionTimestamp: current.metadata.deletionTimestamp,
        deletionGracePeriodSeconds: current.metadata.deletionGracePeriodSeconds,
      };
      const metadata =
        sub === "store" ? { ...fixed, ...(next.metadata ?? {}) } : { ...(next.metadata ?? {}), ...fixed };
      o = { ...next, apiVersion: current.apiVersion, kind: current.kind, metadata };
      for (const k of Object.keys(o.metadata)) if (o.metadata[k] === undefined) delete o.metadata[k];
      if (d.status && sub !== "store") o.status = current.status;
      if (o.status === undefined) delete o.status;
      if (d.generation && !deepEqual(specOf(o), specOf(current)))
        o.metadata.generation = (current.metadata.generation ?? 0) + 1;
    }
    if (deepEqual(withoutRv(o), withoutRv(current))) return current;
    return opts.dryRun
      ? { ...o, metadata: { ...o.metadata, resourceVersion: current.metadata.resourceVersion } }
      : this.commit("MODIFIED", d, o);
  }

  /** A status write keeps the metadata, except the managedFields it records. */
  private statusMeta(current: Doc, next: Doc): Doc {
    const managed = next.metadata?.managedFields;
    return managed === undefined ? current.metadata : { ...current.metadata, managedFields: managed };
  }

  /** Deletes (a Namespace takes what is in it along). */
  remove(d: ResourceDef, ns: string | undefined, name: string, opts: WriteOptions = {}): Doc {
    const current = this.read(d, ns, name);
    if (!current) throw notFound(d, name);
    if (opts.dryRun) return clone(current);
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
    const sameDef = c.def.kind === w.def.kind && c.def.group === w.def.group;
    const inNamespace = !w.namespace || c.event.object.metadata.namespace === w.namespace;
    return sameDef && inNamespace && w.match(c.event.object);
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
