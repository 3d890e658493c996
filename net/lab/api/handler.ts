/**
 * The request handler: routes, verbs and their API semantics over a Store. Reads answer
 * JSON, or a Table when asked (table.ts); writes go through admission.ts; PATCH takes
 * the four patch types (patch.ts, server-side apply approximated: create, else strategic
 * merge plus removal of what the same manager applied before and no longer sends);
 * DELETE honours preconditions, dryRun and, for bound Pods when the server was started
 * with `gracefulPodDeletion`, graceful deletion (deletionTimestamp set, a MODIFIED event;
 * the kubelet then deletes with gracePeriodSeconds=0). Warnings (unknown fields under
 * `fieldValidation=Warn`) are answered in `Warning: 299 - "..."` headers.
 */
import { parse as parseYaml } from "yaml";
import { admitCreate, admitUpdate, type WriteContext } from "./admission.ts";
import { aggregatedDiscovery, AGGREGATED_V2, legacyDiscovery, SERVER_VERSION, wantsAggregated } from "./discovery.ts";
import { ApiError, badRequest, conflict, invalid, methodNotAllowed, noSuchPath, notFound } from "./errors.ts";
import { checkExec } from "./exec.ts";
import { fieldValidationOf } from "./fields.ts";
import { clone, type Doc, isObj, nowStamp } from "./json.ts";
import { podLogs } from "./logs.ts";
import { managerOf } from "./managed-fields.ts";
import { openApiDocument, openApiIndex } from "./openapi.ts";
import { applyPatch, jsonPatch, mergePatch, strategicMerge } from "./patch.ts";
import type { PodRuntime } from "./pod-runtime.ts";
import { decodeProtobuf, PROTOBUF } from "./protobuf.ts";
import { findDef, groupVersion, type ResourceDef } from "./resources.ts";
import { segmentsOf, type Target, target } from "./routes.ts";
import { kindSchema } from "./schema.ts";
import { fieldMatcher, labelMatcher, type Match } from "./selectors.ts";
import { keyOf, type Store } from "./store.ts";
import { includeObjectOf, TABLE_TYPE, toTable, wantsTable } from "./table.ts";
import { watchResponse } from "./watch.ts";

export interface HandlerOptions {
  pods?: PodRuntime;
  gracefulPodDeletion?: boolean;
}

const json = (status: number, body: unknown, warnings: string[] = [], type = "application/json") => {
  const headers = new Headers({ "content-type": type });
  for (const w of warnings) headers.append("Warning", `299 - ${JSON.stringify(w)}`);
  return new Response(JSON.stringify(body), { status, headers });
};

function parseBody(text: string, yaml = false): unknown {
  try {
    return yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid ${yaml ? "YAML" : "JSON"}: ${(e as Error).message}`);
  }
}

async function objectBody(req: Request, yaml = false): Promise<Doc> {
  const protobuf = (req.headers.get("content-type") ?? "").startsWith(PROTOBUF);
  const body = protobuf ? decodeProtobuf(new Uint8Array(await req.arrayBuffer())) : parseBody(await req.text(), yaml);
  if (!isObj(body)) throw badRequest("the request body is not an object");
  return body;
}

const isDryRun = (q: URLSearchParams) => q.getAll("dryRun").includes("All");

const SERVICE_ACCOUNT = findDef("v1", "ServiceAccount");

export class Handler {
  constructor(
    private store: Store,
    private streams: Set<() => void>,
    private opts: HandlerOptions = {},
  ) {}

  async handle(req: Request, url: URL): Promise<Response> {
    try {
      const segs = segmentsOf(url);
      const path = segs.join("/");
      if (["healthz", "livez", "readyz"].includes(path)) return new Response("ok");
      if (path === "version") return json(200, SERVER_VERSION);
      if (segs[0] === "openapi") return this.openApi(segs);
      const t = target(segs);
      if (!t) return this.discovery(req, segs);
      return await this.resource(req, url, t);
    } catch (e) {
      const err =
        e instanceof ApiError ? e : new ApiError(500, "InternalError", `lab API server: ${(e as Error).message}`);
      return json(err.code, err.toStatus());
    }
  }

  private openApi(segs: string[]): Response {
    if (segs[1] !== "v3") throw noSuchPath();
    const doc = segs.length === 2 ? openApiIndex() : openApiDocument(segs.slice(2).join("/"));
    if (!doc) throw noSuchPath();
    return json(200, doc);
  }

  private discovery(req: Request, segs: string[]): Response {
    if (req.method !== "GET") throw noSuchPath();
    const path = segs.join("/");
    if ((path === "api" || path === "apis") && wantsAggregated(req.headers.get("accept")))
      return json(200, aggregatedDiscovery(path === "api"), [], AGGREGATED_V2);
    const doc = legacyDiscovery(segs);
    if (!doc) throw noSuchPath();
    return json(200, doc);
  }

  private async resource(req: Request, url: URL, t: Target): Promise<Response> {
    const served = t.sub === undefined || t.def.subresources.some((s) => s.name === t.sub);
    if (!served || (t.sub !== undefined && t.name === undefined)) throw noSuchPath();
    if (t.sub === "log" && req.method === "GET") return this.logs(req, url, t);
    if (t.sub === "exec") {
      // kubectl tries SPDY (a POST) only when the websocket upgrade failed: answer with the API's reason.
      checkExec(this.podFor(t), url.searchParams, this.opts.pods);
      throw badRequest(
        "exec is served over WebSockets only (subprotocol v5.channel.k8s.io): this request was no upgrade",
      );
    }
    if (t.name === undefined) return this.collection(req, url, t);
    return this.object(req, url, t, t.name);
  }

  private context(req: Request, q: URLSearchParams, operation: "Apply" | "Update" = "Update"): WriteContext {
    return {
      write: { manager: managerOf(q, req.headers.get("user-agent")), operation },
      fieldValidation: fieldValidationOf(q),
      warnings: [],
      dryRun: isDryRun(q),
    };
  }

  private read(req: Request, q: URLSearchParams, t: Target, items: Doc[], single?: Doc): Response {
    if (wantsTable(req.headers.get("accept")))
      return json(200, toTable(t.def, items, this.store.resourceVersion, includeObjectOf(q)), [], TABLE_TYPE);
    return json(200, single ?? this.listDoc(t.def, items));
  }

  private listDoc(d: ResourceDef, items: Doc[]): Doc {
    const bare = items.map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
    return {
      kind: `${d.kind}List`,
      apiVersion: groupVersion(d),
      metadata: { resourceVersion: this.store.resourceVersion },
      items: bare,
    };
  }

  private async collection(req: Request, url: URL, t: Target): Promise<Response> {
    const q = url.searchParams;
    const byLabel = labelMatcher(q.get("labelSelector"));
    const byField = fieldMatcher(q.get("fieldSelector"));
    const match: Match = (o) => byLabel(o) && byField(o);
    if (req.method === "GET" && ["true", "1"].includes(q.get("watch") ?? "")) {
      const tables = wantsTable(req.headers.get("accept"));
      const include = includeObjectOf(q);
      const render = tables ? (o: Doc) => toTable(t.def, [o], o.metadata.resourceVersion, include) : undefined;
      return watchResponse(this.store, this.streams, t, match, q, render);
    }
    if (req.method === "GET") return this.read(req, q, t, this.store.items(t.def, t.namespace).filter(match));
    if (req.method === "POST") {
      if (t.def.namespaced && !t.namespace) throw methodNotAllowed();
      return this.create(req, q, t, await objectBody(req));
    }
    if (req.method === "DELETE") {
      const options = await this.deleteOptions(req, q);
      const chosen = this.store.items(t.def, t.namespace).filter(match);
      const gone = chosen.map((o) => this.deleteOne(t.def, o, options));
      return json(200, this.listDoc(t.def, gone));
    }
    throw methodNotAllowed();
  }

  private create(req: Request, q: URLSearchParams, t: Target, body: Doc, ctx = this.context(req, q)): Response {
    const admitted = admitCreate(this.store, t.def, body, t.namespace, ctx);
    const made = this.store.create(t.def, admitted, t.namespace, { dryRun: ctx.dryRun });
    if (t.def.kind === "Namespace" && !ctx.dryRun) this.namespaceAdded(made.metadata.name);
    return json(201, made, ctx.warnings);
  }

  /** What the namespace controllers add to a new namespace: its `default` ServiceAccount. */
  namespaceAdded(name: string): void {
    if (this.store.read(SERVICE_ACCOUNT, name, "default")) return;
    this.store.create(SERVICE_ACCOUNT, { metadata: { name: "default", namespace: name } }, name);
  }

  private async object(req: Request, url: URL, t: Target, name: string): Promise<Response> {
    const current = this.store.read(t.def, t.namespace, name);
    const q = url.searchParams;
    switch (req.method) {
      case "GET":
        if (!current) throw notFound(t.def, name);
        return this.read(req, q, t, [current], current);
      case "PUT": {
        if (!current) throw notFound(t.def, name);
        const ctx = this.context(req, q);
        const next = admitUpdate(t.def, current, await objectBody(req), t.sub, ctx);
        return json(200, this.store.update(t.def, current, next, t.sub, { dryRun: ctx.dryRun }), ctx.warnings);
      }
      case "PATCH":
        return this.patch(req, q, t, name, current);
      case "DELETE": {
        if (!current) throw notFound(t.def, name);
        const options = await this.deleteOptions(req, q);
        const pre = options.preconditions;
        if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion)
          throw conflict(t.def, name);
        if (pre?.uid && pre.uid !== current.metadata.uid) throw conflict(t.def, name);
        return json(200, this.deleteOne(t.def, current, options));
      }
    }
    throw methodNotAllowed();
  }

  private async deleteOptions(req: Request, q: URLSearchParams): Promise<Doc> {
    const text = await req.text();
    const body = text ? parseBody(text) : {};
    const options: Doc = isObj(body) ? body : {};
    const grace = q.get("gracePeriodSeconds");
    if (grace !== null) options.gracePeriodSeconds = Number(grace);
    if (isDryRun(q)) options.dryRun = ["All"];
    return options;
  }

  /** Deletes one object: at once, or (a bound Pod, graceful deletion on) by marking it. */
  private deleteOne(d: ResourceDef, current: Doc, options: Doc): Doc {
    const dryRun = (options.dryRun ?? []).includes("All");
    const ns = current.metadata.namespace;
    const name = current.metadata.name;
    const phase = current.status?.phase;
    const graceful =
      this.opts.gracefulPodDeletion &&
      d.kind === "Pod" &&
      current.spec?.nodeName &&
      phase !== "Succeeded" &&
      phase !== "Failed";
    const grace = options.gracePeriodSeconds ?? current.spec?.terminationGracePeriodSeconds ?? 30;
    if (!graceful || grace === 0) return this.store.remove(d, ns, name, { dryRun });
    if (current.metadata.deletionTimestamp) return current;
    const marked = clone(current);
    marked.metadata.deletionTimestamp = nowStamp(new Date(Date.now() + grace * 1000));
    marked.metadata.deletionGracePeriodSeconds = grace;
    delete marked.metadata.resourceVersion;
    return this.store.update(d, current, marked, "store", { dryRun });
  }

  private async patch(req: Request, q: URLSearchParams, t: Target, name: string, current: Doc | undefined) {
    const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
    if (type === "application/apply-patch+yaml") return this.apply(req, q, t, name, current);
    const schema = kindSchema(t.def.kind);
    const merges: Record<string, (a: unknown, b: unknown) => unknown> = {
      "application/merge-patch+json": mergePatch,
      "application/strategic-merge-patch+json": (a, b) => strategicMerge(a, b, schema),
      "application/json-patch+json": jsonPatch,
    };
    const merge = merges[type];
    if (!merge)
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
      );
    if (!current) throw notFound(t.def, name);
    const patch = parseBody(await req.text());
    let next: unknown;
    try {
      next = merge(current, patch);
    } catch (e) {
      throw invalid(t.def, name, (e as Error).message);
    }
    if (!isObj(next)) throw invalid(t.def, name, "the patched object is not an object");
    const ctx = this.context(req, q);
    const admitted = admitUpdate(t.def, current, next, t.sub, ctx);
    return json(200, this.store.update(t.def, current, admitted, t.sub, { dryRun: ctx.dryRun }), ctx.warnings);
  }

  private async apply(req: Request, q: URLSearchParams, t: Target, name: string, current: Doc | undefined) {
    const manager = q.get("fieldManager");
    if (!manager)
      throw new ApiError(
        422,
        "Invalid",
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
      );
    const body = await objectBody(req, true);
    if (body.apiVersion !== groupVersion(t.def) || body.kind !== t.def.kind)
      throw badRequest(
        `apply body has apiVersion/kind ${body.apiVersion}/${body.kind}, the URL is ${groupVersion(t.def)}/${t.def.kind}`,
      );
    if (body.metadata?.name !== name)
      throw badRequest(`the name of the object (${body.metadata?.name}) does not match the name on the URL (${name})`);
    const ctx = this.context(req, q, "Apply");
    const applied = clone(body);
    ctx.write.applied = applied;
    const key = keyOf(t.def, t.def.namespaced ? t.namespace : undefined, name);
    const remember = (o: Doc) => {
      if (!ctx.dryRun) this.store.applied.set(key, (this.store.applied.get(key) ?? new Map()).set(manager, applied));
      return o;
    };
    if (!current) {
      const admitted = admitCreate(this.store, t.def, body, t.namespace, ctx);
      const made = this.store.create(t.def, admitted, t.namespace, { dryRun: ctx.dryRun });
      if (t.def.kind === "Namespace" && !ctx.dryRun) this.namespaceAdded(made.metadata.name);
      return json(201, remember(made), ctx.warnings);
    }
    const schema = kindSchema(t.def.kind);
    const prev = this.store.applied.get(key)?.get(manager) ?? {};
    const next = strategicMerge(current, applyPatch(prev, body, schema), schema) as Doc;
    next.metadata.resourceVersion = body.metadata?.resourceVersion ?? current.metadata.resourceVersion;
    const admitted = admitUpdate(t.def, current, next, t.sub, ctx);
    return json(
      200,
      remember(this.store.update(t.def, current, admitted, t.sub, { dryRun: ctx.dryRun })),
      ctx.warnings,
    );
  }

  private logs(req: Request, url: URL, t: Target): Response {
    const pod = this.store.read(t.def, t.namespace, t.name!);
    if (!pod) throw notFound(t.def, t.name!);
    const ctx = {
      podExists: () => {
        const now = this.store.read(t.def, t.namespace, t.name!);
        return now?.metadata.uid === pod.metadata.uid;
      },
      onShutdown: (close: () => void) => {
        this.streams.add(close);
        return () => this.streams.delete(close);
      },
    };
    return podLogs(pod, url.searchParams, this.opts.pods, ctx, req.signal);
  }

  /** The stored pod an exec request names (404 as the API answers it). */
  podFor(t: Target): Doc {
    const pod = this.store.read(t.def, t.namespace, t.name!);
    if (!pod) throw notFound(t.def, t.name!);
    return pod;
  }
}
