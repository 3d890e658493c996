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

/**
 * The Secret holding WEAVE_PASSWORD; only rendered when a password secret is asked for.
 * `data` (base64 of the bytes as read), not `stringData`: a password file of any bytes
 * arrives whole, and server-side apply compares `data` (stringData is write-only).
 */
export function passwordSecret(s: ManifestSettings): V1Secret | undefined {
  if (!s.passwordSecret) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(false, s.passwordSecret.name),
    type: "Opaque",
    data: { [PASSWORD_KEY]: Buffer.from(s.passwordSecret.password).toString("base64") },
  };
}

/** What `--dry-run`/`-o` print says in place of a Secret's data. */
export const REDACTED_NOTE =
  `data left out: weave install never prints the password (key ${PASSWORD_KEY}); ` +
  "it applies it itself from WEAVE_PASSWORD or --password-file";

/**
 * The objects as they may be printed: every Secret without its `data` and `stringData`
 * (the password is never printed). Applied as printed, such a Secret holds no key, and
 * the agents' secretKeyRef keeps them from starting: no agent runs without its password.
 */
export function redactSecrets(objs: readonly KubernetesObject[]): KubernetesObject[] {
  return objs.map((o) => {
    if (o.kind !== "Secret") return o;
    const { data: _d, stringData: _s, ...rest } = o as V1Secret;
    return rest as KubernetesObject;
  });
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

/**
 * A multi-document YAML stream (`kubectl apply -f -` takes it). A Secret without data
 * (redactSecrets) is headed by a comment saying why.
 */
export function toYaml(objs: readonly KubernetesObject[]): string {
  return objs
    .map((o) => {
      const doc = stringify(o, { lineWidth: 0, aliasDuplicateObjects: false });
      const bare = o.kind === "Secret" && !(o as V1Secret).data && !(o as V1Secret).stringData;
      return bare ? `# ${REDACTED_NOTE}\n${doc}` : doc;
    })
    .join("---\n");
}

/** One `v1` List holding the objects, as JSON (`kubectl apply -f -` takes it too). */
export function toJson(objs: readonly KubernetesObject[]): string {
  return `${JSON.stringify({ apiVersion: "v1", kind: "List", items: objs }, null, 2)}\n`;
}
