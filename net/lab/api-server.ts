/**
 * The lab's API server: a lab fixture that follows the Kubernetes API's conventions, not
 * a Kubernetes. `weave lab up` runs it in a long-lived process; the agents (through
 * @kubernetes/client-node) and people (through the real kubectl, v1.32) talk to it with
 * a kubeconfig, over plain http. It has no scheduler, no controllers and no kubelet of its
 * own (the lab brings its kubelet and controllers; see PodRuntime for the kubelet's hooks),
 * and no authentication or authorization: every request is allowed.
 *
 * What it models (net/lab/api/, one concept a file):
 * - the kinds of resources.ts (Nodes, Namespaces, Pods, Services, Endpoints, ConfigMaps,
 *   Secrets, ServiceAccounts, Events, DaemonSets, NetworkPolicies, Leases, the RBAC kinds), one
 *   version each, with discovery, legacy and aggregated (short names, categories, verbs,
 *   the status/log/exec subresources), `/version` (1.32) and OpenAPI v3 documents;
 * - objects with uid, creationTimestamp, a resourceVersion from one counter, generation,
 *   managedFields (Apply and Update entries), generateName; a write that changes nothing
 *   is a no-op; 409 on a stale resourceVersion, 404, 409 AlreadyExists, 422 Invalid;
 * - what the API adds by itself (defaults.ts): Pod defaults and the ServiceAccount,
 *   DefaultTolerationSeconds and Priority admissions, NetworkPolicy policyTypes,
 *   DaemonSet and Service defaults, clusterIPs from 10.96.0.0/12 (`kubernetes` is
 *   10.96.0.1:443), the `kubernetes.io/metadata.name` label and `spec.finalizers` of
 *   Namespaces, a `default` ServiceAccount in every namespace; deleting a Namespace
 *   deletes what is in it;
 * - validation of names, labels, required Pod and DaemonSet fields, the immutable Pod
 *   spec, and NetworkPolicy fields (validation.ts); server-side field validation
 *   (`fieldValidation` Strict/Warn/Ignore for unknown fields, fields.ts);
 * - list selectors (label: `=`, `!=`, `in`, `notin`, `k`, `!k`; field: `=`, `!=`, several
 *   terms), watches (from a resourceVersion, 410 Expired after `store.compact()`), no
 *   paging (`limit` is ignored);
 * - PATCH: merge, strategic merge (merge keys from the schema, directives), JSON patch,
 *   and server-side apply (create, or merge plus removal of what the same manager applied
 *   before and no longer sends); `dryRun=All`;
 * - Tables for `kubectl get` with the upstream printers' columns (printers.ts);
 * - pods/log and pods/exec through the PodRuntime hooks, graceful deletion of bound Pods
 *   when asked (`gracefulPodDeletion`);
 * - request bodies in JSON, YAML (apply) and, for the kinds `kubectl create <kind>` makes
 *   through typed clients, protobuf (protobuf.ts); answers are always JSON.
 * Objects put into the store directly (`store.put`: tests, the lab's kubelet) skip
 * defaults, validation and managedFields. The `kubernetes` Service is created only with
 * `kubernetesService: true` (a unit test needs a cluster without it).
 * Not modelled: apply conflicts (`force` is accepted and ignored), field ownership beyond
 * what managedFields records, finalizers and garbage collection by owner references,
 * admission webhooks, quotas and limit ranges, the projected service-account token volume,
 * type checking of field values (a string where a number belongs is stored as sent),
 * paging, watch bookmarks, protobuf answers, SPDY (exec is websocket only), port-forward, attach,
 * a Namespace's Terminating phase (its deletion is immediate), OpenAPI descriptions (so
 * `kubectl explain` shows fields and types without text), authentication.
 */
export { ApiError, type Cause } from "./api/errors.ts";
export { jsonPatch, mergePatch, strategicMerge } from "./api/patch.ts";
export type { ExecRequest, ExecSpawn, LogOptions, PodRuntime } from "./api/pod-runtime.ts";
export { findDef, groupVersion, RESOURCES, type ResourceDef } from "./api/resources.ts";
export { fieldMatcher, labelMatcher, selectorMatches } from "./api/selectors.ts";
export {
  type ApiServer,
  type ApiServerOptions,
  kubeconfigYaml,
  type Listener,
  type RequestRecord,
  type ServeHandlers,
  startApiServer,
} from "./api/server.ts";
export { Store, type WatchEvent, type Watcher } from "./api/store.ts";
