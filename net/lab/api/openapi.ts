/**
 * The OpenAPI v3 documents kubectl downloads: `/openapi/v3` (the index of group versions)
 * and one document per group version. kubectl 1.32 reads them to decide that the server
 * validates fields itself (the PATCH operation of a kind has the `fieldValidation` query
 * parameter and `x-kubernetes-group-version-kind`: then `apply`/`create` send
 * `fieldValidation=Strict` instead of validating client-side from /openapi/v2), to compute
 * a client-side apply's strategic merge patch (`x-kubernetes-patch-merge-key` and
 * `-strategy` on list fields) and for `kubectl explain`.
 *
 * Built from schema.ts on first use. Names follow the API (`io.k8s.api.core.v1.Pod`);
 * descriptions are not carried (the models have none at run time), so `explain` shows
 * fields and types only.
 */
import type { Doc } from "./json.ts";
import { groupVersion, RESOURCES, type ResourceDef } from "./resources.ts";
import { kindModel, modelSchema, type Schema } from "./schema.ts";

const META_TYPES = new Set([
  "ObjectMeta",
  "ListMeta",
  "LabelSelector",
  "LabelSelectorRequirement",
  "ManagedFieldsEntry",
  "OwnerReference",
  "Status",
  "StatusDetails",
  "StatusCause",
  "DeleteOptions",
  "Preconditions",
  "Condition",
]);

/** The API's name of a model's schema: V1DaemonSetSpec → io.k8s.api.apps.v1.DaemonSetSpec. */
export function openApiName(model: string): string {
  const bare = model.replace(/^(CoreV1|RbacV1|EventsV1|V1)/, "");
  if (META_TYPES.has(bare)) return `io.k8s.apimachinery.pkg.apis.meta.v1.${bare}`;
  if (model.startsWith("RbacV1") || /^(ClusterRole|Role|PolicyRule|AggregationRule)/.test(bare))
    return `io.k8s.api.rbac.v1.${bare}`;
  if (bare.startsWith("DaemonSet")) return `io.k8s.api.apps.v1.${bare}`;
  if (bare.startsWith("Lease")) return `io.k8s.api.coordination.v1.${bare}`;
  if (bare.startsWith("NetworkPolicy") || bare === "IPBlock") return `io.k8s.api.networking.v1.${bare}`;
  return `io.k8s.api.core.v1.${bare}`;
}

const INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

function property(s: Schema, collect: (model: string) => void): Doc {
  switch (s.type) {
    case "object":
      collect(s.model);
      return { allOf: [ref(openApiName(s.model))], default: {} };
    case "map":
      return { type: "object", additionalProperties: property(s.values, collect) };
    case "array": {
      const meta = {
        ...(s.mergeKey ? { "x-kubernetes-patch-merge-key": s.mergeKey } : {}),
        ...(s.strategy ? { "x-kubernetes-patch-strategy": s.strategy } : {}),
      };
      return { type: "array", items: property(s.items, collect), ...meta };
    }
    case "int-or-string":
      return ref(INT_OR_STRING);
    case "any":
      return { type: "object", "x-kubernetes-preserve-unknown-fields": true };
    default:
      return { type: s.type, ...(s.format ? { format: s.format } : {}) };
  }
}

/** Every schema a group version's kinds reach, by the API's names. */
function componentsOf(defs: ResourceDef[]): Record<string, Doc> {
  const out: Record<string, Doc> = {
    [INT_OR_STRING]: { type: "string", format: "int-or-string", "x-kubernetes-int-or-string": true },
    [PATCH]: {
      type: "object",
      description: "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
    },
  };
  const pending: string[] = [];
  const collect = (model: string) => {
    if (!(openApiName(model) in out) && !pending.includes(model)) pending.push(model);
  };
  const gvkOf = new Map(defs.map((d) => [kindModel(d.kind)!, d]));
  for (const model of gvkOf.keys()) collect(model);
  for (let model = pending.shift(); model !== undefined; model = pending.shift()) {
    const s = modelSchema(model);
    if (s.type !== "object") continue;
    const properties = Object.fromEntries([...s.props].map(([k, v]) => [k, property(v, collect)]));
    const d = gvkOf.get(model);
    const gvk = d ? { "x-kubernetes-group-version-kind": [{ group: d.group, kind: d.kind, version: d.version }] } : {};
    out[openApiName(model)] = { type: "object", properties, ...gvk };
  }
  return out;
}

const QUERY = (name: string, type = "string") => ({ name, in: "query", schema: { type, uniqueItems: true } });

function pathsOf(d: ResourceDef): Doc {
  const gvk = { group: d.group, version: d.version, kind: d.kind };
  const kindRef = ref(openApiName(kindModel(d.kind)!));
  const ok = (code: string) => ({
    [code]: { description: "OK", content: { "application/json": { schema: kindRef } } },
  });
  const patchTypes = [
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
  ];
  const writeParams = [QUERY("dryRun"), QUERY("fieldManager"), QUERY("fieldValidation")];
  const op = (action: string, extra: Doc) => ({
    operationId: `${action}${d.kind}`,
    tags: [d.group || "core"],
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": gvk,
    ...extra,
  });
  const item = {
    get: op("get", { responses: ok("200") }),
    put: op("put", {
      parameters: writeParams,
      requestBody: { content: { "*/*": { schema: kindRef } }, required: true },
      responses: { ...ok("200"), ...ok("201") },
    }),
    patch: op("patch", {
      parameters: [...writeParams, QUERY("force", "boolean")],
      requestBody: { content: Object.fromEntries(patchTypes.map((t) => [t, { schema: ref(PATCH) }])), required: true },
      responses: { ...ok("200"), ...ok("201") },
    }),
    delete: op("delete", { responses: ok("200") }),
  };
  const collection = {
    get: op("list", { responses: ok("200") }),
    post: op("post", {
      parameters: writeParams,
      requestBody: { content: { "*/*": { schema: kindRef } }, required: true },
      responses: { ...ok("200"), ...ok("201") },
    }),
  };
  const base = d.group ? `/apis/${d.group}/${d.version}` : `/api/${d.version}`;
  const scope = d.namespaced ? `${base}/namespaces/{namespace}/${d.plural}` : `${base}/${d.plural}`;
  const statusPaths = d.status
    ? { [`${scope}/{name}/status`]: { get: item.get, put: item.put, patch: item.patch } }
    : {};
  return { [scope]: collection, [`${scope}/{name}`]: item, ...statusPaths };
}

/** `/openapi/v3`: where each group version's document is. */
export function openApiIndex(): Doc {
  const gvs = [...new Set(RESOURCES.map(groupVersion))];
  const entry = (gv: string) => (gv.includes("/") ? `apis/${gv}` : `api/${gv}`);
  return {
    paths: Object.fromEntries(
      gvs.map((gv) => [entry(gv), { serverRelativeURL: `/openapi/v3/${entry(gv)}?hash=lab1` }]),
    ),
  };
}

const documents = new Map<string, Doc>();

/** The document of a group version (`api/v1`, `apis/apps/v1`), or undefined. */
export function openApiDocument(path: string): Doc | undefined {
  const known = documents.get(path);
  if (known) return known;
  const gv = path.replace(/^apis?\//, "");
  const defs = RESOURCES.filter((r) => groupVersion(r) === gv && path.startsWith(r.group ? "apis/" : "api/"));
  if (!defs.length) return undefined;
  const doc = {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: "v1.32.0-weave-lab" },
    paths: Object.assign({}, ...defs.map(pathsOf)),
    components: { schemas: componentsOf(defs) },
  };
  documents.set(path, doc);
  return doc;
}
