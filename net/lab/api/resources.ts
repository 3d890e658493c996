/**
 * The kinds the lab's API server serves, with what discovery says of them: short names,
 * categories, verbs and subresources, as a real API server of 1.32 lists them (only the
 * subresources we answer are listed).
 */

/** A subresource of a kind: `status`, `log`, `exec`. */
export interface SubresourceDef {
  name: string;
  verbs: string[];
  /** The kind a request to it answers with (the parent's when absent). */
  kind?: string;
}

/** One kind the server serves. */
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
  generation: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  subresources: SubresourceDef[];
}

const ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS: SubresourceDef = { name: "status", verbs: ["get", "patch", "update"] };

interface DefOptions {
  shortNames?: string[];
  categories?: string[];
  status?: boolean;
  generation?: boolean;
  verbs?: string[];
  subresources?: SubresourceDef[];
}

function def(group: string, kind: string, plural: string, namespaced: boolean, o: DefOptions = {}): ResourceDef {
  const status = o.status ?? false;
  const subresources = [...(status ? [STATUS] : []), ...(o.subresources ?? [])];
  return {
    group,
    version: "v1",
    kind,
    plural,
    singular: kind.toLowerCase(),
    namespaced,
    status,
    generation: o.generation ?? false,
    shortNames: o.shortNames ?? [],
    categories: o.categories ?? [],
    verbs: o.verbs ?? ALL_VERBS,
    subresources,
  };
}

const POD_LOG: SubresourceDef = { name: "log", verbs: ["get"] };
const POD_EXEC: SubresourceDef = { name: "exec", verbs: ["create", "get"], kind: "PodExecOptions" };
const NAMESPACE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"];
const RBAC = "rbac.authorization.k8s.io";

/** The kinds served. */
export const RESOURCES: readonly ResourceDef[] = [
  def("", "Node", "nodes", false, { shortNames: ["no"], status: true }),
  def("", "Namespace", "namespaces", false, { shortNames: ["ns"], status: true, verbs: NAMESPACE_VERBS }),
  def("", "Pod", "pods", true, {
    shortNames: ["po"],
    categories: ["all"],
    status: true,
    generation: true,
    subresources: [POD_LOG, POD_EXEC],
  }),
  def("", "Service", "services", true, { shortNames: ["svc"], categories: ["all"], status: true }),
  def("", "Endpoints", "endpoints", true, { shortNames: ["ep"] }),
  def("", "ConfigMap", "configmaps", true, { shortNames: ["cm"] }),
  def("", "Secret", "secrets", true),
  def("", "ServiceAccount", "serviceaccounts", true, { shortNames: ["sa"] }),
  def("", "Event", "events", true, { shortNames: ["ev"] }),
  def("apps", "DaemonSet", "daemonsets", true, {
    shortNames: ["ds"],
    categories: ["all"],
    status: true,
    generation: true,
  }),
  def(RBAC, "ClusterRole", "clusterroles", false),
  def(RBAC, "ClusterRoleBinding", "clusterrolebindings", false),
  def(RBAC, "Role", "roles", true),
  def(RBAC, "RoleBinding", "rolebindings", true),
  def("coordination.k8s.io", "Lease", "leases", true),
  def("networking.k8s.io", "NetworkPolicy", "networkpolicies", true, { shortNames: ["netpol"], generation: true }),
];

export const groupVersion = (d: ResourceDef) => (d.group ? `${d.group}/${d.version}` : d.version);

/** `pods`, `daemonsets.apps`: how the API names a resource in its messages. */
export const qualified = (d: ResourceDef) => (d.group ? `${d.plural}.${d.group}` : d.plural);

/** The definition of a kind; throws for a kind that is not served. */
export function findDef(apiVersion: string, kind: string): ResourceDef {
  const d = RESOURCES.find((r) => groupVersion(r) === apiVersion && r.kind === kind);
  if (!d) throw new Error(`lab API server: no kind ${kind} in ${apiVersion}`);
  return d;
}

/** The definition of a kind by its name alone (every kind served has one version). */
export const defOfKind = (kind: string) => RESOURCES.find((r) => r.kind === kind);

/** The groups served, the core group ("") first. */
export const GROUPS: readonly string[] = [...new Set(RESOURCES.map((r) => r.group))];
