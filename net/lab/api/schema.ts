/**
 * The structure of every kind served, for unknown-field checks (`fieldValidation`), for
 * strategic merge patch (list merge keys), for managedFields and for the OpenAPI v3
 * documents kubectl downloads.
 *
 * Design: no schema file is shipped. The structure comes from the model classes of
 * `@kubernetes/client-node` (generated from the upstream OpenAPI spec, release 1.36, a
 * superset of the 1.32 fields), which the binary bundles anyway: each class lists its
 * fields with a type (`V1PodSpec`, `Array<V1Container>`, `{ [key: string]: string; }`,
 * `IntOrString`, `Date`, `number` with format int32/int64). The patch strategies the
 * generator drops (`x-kubernetes-patch-merge-key`) come from PATCH_META, copied from the
 * API's Go types (`+patchMergeKey`, `+patchStrategy`).
 */
import * as models from "@kubernetes/client-node";
import { defOfKind } from "./resources.ts";

/** A node of the structure. */
export type Schema =
  | { type: "object"; model: string; props: Map<string, Schema> }
  | { type: "map"; values: Schema }
  | { type: "array"; items: Schema; mergeKey?: string; strategy?: string }
  | { type: "string" | "integer" | "number" | "boolean" | "int-or-string" | "any"; format?: string };

/** `+patchMergeKey`/`+patchStrategy` of list fields, per model and field (the API's Go types). */
const PATCH_META: Record<string, Record<string, { key?: string; strategy: string }>> = {
  V1PodSpec: {
    containers: { key: "name", strategy: "merge" },
    initContainers: { key: "name", strategy: "merge" },
    ephemeralContainers: { key: "name", strategy: "merge" },
    volumes: { key: "name", strategy: "merge,retainKeys" },
    imagePullSecrets: { key: "name", strategy: "merge" },
    hostAliases: { key: "ip", strategy: "merge" },
    topologySpreadConstraints: { key: "topologyKey", strategy: "merge" },
    resourceClaims: { key: "name", strategy: "merge,retainKeys" },
    schedulingGates: { key: "name", strategy: "merge" },
  },
  V1Container: {
    env: { key: "name", strategy: "merge" },
    ports: { key: "containerPort", strategy: "merge" },
    volumeMounts: { key: "mountPath", strategy: "merge" },
    volumeDevices: { key: "devicePath", strategy: "merge" },
  },
  V1PodStatus: {
    conditions: { key: "type", strategy: "merge" },
    podIPs: { key: "ip", strategy: "merge" },
    hostIPs: { key: "ip", strategy: "merge" },
  },
  V1NodeStatus: { conditions: { key: "type", strategy: "merge" }, addresses: { key: "type", strategy: "merge" } },
  V1NodeSpec: { podCIDRs: { strategy: "merge" } },
  V1ObjectMeta: { ownerReferences: { key: "uid", strategy: "merge" }, finalizers: { strategy: "merge" } },
  V1ServiceSpec: { ports: { key: "port", strategy: "merge" } },
  V1ServiceAccount: { secrets: { key: "name", strategy: "merge" } },
  V1DaemonSetStatus: { conditions: { key: "type", strategy: "merge" } },
  V1NamespaceStatus: { conditions: { key: "type", strategy: "merge" } },
  V1ServiceStatus: { conditions: { key: "type", strategy: "merge" } },
};
// Ephemeral containers share the Container's lists.
PATCH_META.V1EphemeralContainer = PATCH_META.V1Container!;

/** The model class of each kind served. */
const KIND_MODELS: Record<string, string> = {
  Node: "V1Node",
  Namespace: "V1Namespace",
  Pod: "V1Pod",
  Service: "V1Service",
  Endpoints: "V1Endpoints",
  ConfigMap: "V1ConfigMap",
  Secret: "V1Secret",
  ServiceAccount: "V1ServiceAccount",
  Event: "CoreV1Event",
  DaemonSet: "V1DaemonSet",
  ClusterRole: "V1ClusterRole",
  ClusterRoleBinding: "V1ClusterRoleBinding",
  Role: "V1Role",
  RoleBinding: "V1RoleBinding",
  NetworkPolicy: "V1NetworkPolicy",
  Lease: "V1Lease",
};

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}
type ModelClass = { getAttributeTypeMap(): Attribute[] };

const modelClass = (name: string): ModelClass | undefined => {
  const c = (models as Record<string, unknown>)[name] as Partial<ModelClass> | undefined;
  return typeof c?.getAttributeTypeMap === "function" ? (c as ModelClass) : undefined;
};

const built = new Map<string, Schema>();

/** The structure of a model class (`V1PodSpec`), built once. */
export function modelSchema(model: string): Schema {
  const known = built.get(model);
  if (known) return known;
  const cls = modelClass(model);
  if (!cls) return { type: "any" };
  const node: Schema = { type: "object", model, props: new Map() };
  built.set(model, node); // before the fields: a model may refer to itself
  const meta = PATCH_META[model] ?? {};
  for (const a of cls.getAttributeTypeMap()) {
    const field = typeSchema(a.type, a.format);
    const patch = meta[a.baseName];
    const withPatch =
      field.type === "array" && patch ? { ...field, mergeKey: patch.key, strategy: patch.strategy } : field;
    node.props.set(a.baseName, withPatch);
  }
  return node;
}

function typeSchema(type: string, format: string): Schema {
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return { type: "array", items: typeSchema(array[1]!, format) };
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return { type: "map", values: typeSchema(map[1]!, format) };
  if (type === "string") return format === "byte" ? { type: "string", format } : { type: "string" };
  if (type === "boolean") return { type: "boolean" };
  if (type === "number") return format === "double" ? { type: "number", format } : { type: "integer", format };
  if (type === "Date") return { type: "string", format: "date-time" };
  if (type === "IntOrString") return { type: "int-or-string" };
  if (format === "date-time-micro") return { type: "string", format: "date-time" };
  if (/^[A-Z]\w+$/.test(type) && modelClass(type)) return modelSchema(type);
  return { type: "any" };
}

/** The model class name of a kind served. */
export const kindModel = (kind: string): string | undefined => KIND_MODELS[kind];

/** The structure of a kind served. */
export function kindSchema(kind: string): Schema | undefined {
  const model = KIND_MODELS[kind];
  return model && defOfKind(kind) ? modelSchema(model) : undefined;
}

/** The schema of a field of an object schema, or undefined. */
export const propOf = (s: Schema | undefined, key: string): Schema | undefined =>
  s?.type === "object" ? s.props.get(key) : s?.type === "map" ? s.values : undefined;

/** The merge key of a list field (`containers` → `name`), or undefined for an atomic list. */
export function mergeKeyOf(parent: Schema | undefined, field: string): string | undefined {
  const s = propOf(parent, field);
  return s?.type === "array" ? s.mergeKey : undefined;
}
