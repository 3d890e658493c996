/**
 * Everything `weave install` puts on a cluster, in the order it is applied (what a
 * later object refers to comes first), and its YAML and JSON renderings. The one place
 * the manifests come from: `--dry-run`, install and uninstall all use `renderManifests`.
 */
import type { KubernetesObject, V1ConfigMap, V1Secret } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { VERSION } from "../net/version.ts";
import { daemonSet } from "./daemonset.ts";
import { clusterRole, clusterRoleBinding, meta, role, roleBinding, serviceAccount } from "./rbac.ts";
import { PASSWORD_KEY, type ManifestSettings } from "./settings.ts";

export * from "./settings.ts";
export { LABELS } from "./rbac.ts";

/**
 * The ConfigMap `weave-net`: what install chose, for people and `weave doctor` to read.
 * The agents keep their own state in its annotations, which a re-install leaves alone
 * (server-side apply only takes the fields install itself sets).
 */
export function configMap(s: ManifestSettings): V1ConfigMap {
  const data: Record<string, string> = {
    version: VERSION,
    image: s.image,
    "ipalloc-range": s.ipallocRange,
    "no-masq-local": String(s.noMasqLocal),
  };
  if (s.mtu !== undefined) data.mtu = String(s.mtu);
  if (s.connLimit !== undefined) data["conn-limit"] = String(s.connLimit);
  if (s.extraArgs !== undefined) data["extra-args"] = s.extraArgs;
  if (s.passwordSecret) data["password-secret"] = s.passwordSecret.name;
  return { apiVersion: "v1", kind: "ConfigMap", metadata: meta(), data };
}

/** The Secret holding WEAVE_PASSWORD; only rendered when a password secret is asked for. */
export function passwordSecret(s: ManifestSettings): V1Secret | undefined {
  if (!s.passwordSecret) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(false, s.passwordSecret.name),
    type: "Opaque",
    stringData: { [PASSWORD_KEY]: s.passwordSecret.password },
  };
}

/** The objects, in apply order; uninstall deletes them in the reverse order. */
export function renderManifests(s: ManifestSettings): KubernetesObject[] {
  const secret = passwordSecret(s);
  return [
    serviceAccount(),
    clusterRole(),
    clusterRoleBinding(),
    role(),
    roleBinding(),
    configMap(s),
    ...(secret ? [secret] : []),
    daemonSet(s),
  ];
}

/** "DaemonSet kube-system/weave-net": how messages name an object. */
export function describeObject(o: KubernetesObject): string {
  const m = o.metadata ?? {};
  return `${o.kind} ${m.namespace ? `${m.namespace}/` : ""}${m.name}`;
}

/** A multi-document YAML stream (`kubectl apply -f -` takes it). */
export function toYaml(objs: readonly KubernetesObject[]): string {
  return objs.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join("---\n");
}

/** One `v1` List holding the objects, as JSON (`kubectl apply -f -` takes it too). */
export function toJson(objs: readonly KubernetesObject[]): string {
  return `${JSON.stringify({ apiVersion: "v1", kind: "List", items: objs }, null, 2)}\n`;
}
