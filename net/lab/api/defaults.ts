/**
 * What the API fills in by itself when an object is written: the defaulting functions
 * of each kind (k8s.io/api `SetDefaults_*`) and the admission plugins every cluster
 * runs on Pods (ServiceAccount: `serviceAccountName: default`; DefaultTolerationSeconds:
 * not-ready/unreachable for 300 s; Priority: priority 0). Defaulting is idempotent: it
 * runs on every create and update, as the API decodes every write. On create, the status
 * a client sends for a Pod, DaemonSet or Service is replaced, as the API's strategies do
 * (PrepareForCreate); other kinds keep it. The Service's
 * clusterIP is not here: allocation needs the store (service-ips.ts).
 */
import { type Doc, isObj } from "./json.ts";
import type { ResourceDef } from "./resources.ts";

const setDefault = (o: Doc, key: string, value: unknown) => {
  if (o[key] === undefined) o[key] = value;
};

/** imagePullPolicy by tag: Always for `:latest` or no tag, IfNotPresent otherwise (a digest counts as a tag). */
export function pullPolicyOf(image: string | undefined): string {
  if (!image) return "IfNotPresent";
  if (image.includes("@")) return "IfNotPresent";
  const lastPart = image.split("/").at(-1) ?? image;
  const tag = lastPart.includes(":") ? lastPart.split(":").at(-1) : undefined;
  return tag === undefined || tag === "latest" ? "Always" : "IfNotPresent";
}

function defaultContainer(c: Doc, hostNetwork: boolean) {
  setDefault(c, "terminationMessagePath", "/dev/termination-log");
  setDefault(c, "terminationMessagePolicy", "File");
  setDefault(c, "imagePullPolicy", pullPolicyOf(c.image));
  setDefault(c, "resources", {});
  for (const p of (c.ports ?? []) as Doc[]) {
    setDefault(p, "protocol", "TCP");
    if (hostNetwork) setDefault(p, "hostPort", p.containerPort);
  }
}

/** SetDefaults_PodSpec and SetDefaults_Container: what a Pod and a pod template get. */
export function defaultPodSpec(spec: Doc) {
  setDefault(spec, "restartPolicy", "Always");
  setDefault(spec, "dnsPolicy", "ClusterFirst");
  setDefault(spec, "schedulerName", "default-scheduler");
  setDefault(spec, "terminationGracePeriodSeconds", 30);
  setDefault(spec, "securityContext", {});
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as Doc[])
    if (isObj(c)) defaultContainer(c, spec.hostNetwork === true);
}

const DEFAULT_TOLERATIONS = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"].map((key) => ({
  key,
  operator: "Exists",
  effect: "NoExecute",
  tolerationSeconds: 300,
}));

/** The QoS class the API derives from the containers' requests and limits. */
export function qosClassOf(spec: Doc): string {
  const containers = [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as Doc[];
  const resources = containers.map((c) => c.resources ?? {});
  const none = resources.every((r) => !Object.keys(r.requests ?? {}).length && !Object.keys(r.limits ?? {}).length);
  if (none) return "BestEffort";
  const guaranteed = resources.every((r) =>
    ["cpu", "memory"].every((k) => r.limits?.[k] !== undefined && (r.requests?.[k] ?? r.limits[k]) === r.limits[k]),
  );
  return guaranteed ? "Guaranteed" : "Burstable";
}

function defaultPod(o: Doc, create: boolean) {
  o.spec ??= {};
  const spec = o.spec as Doc;
  defaultPodSpec(spec);
  if (spec.serviceAccount && !spec.serviceAccountName) spec.serviceAccountName = spec.serviceAccount;
  setDefault(spec, "serviceAccountName", "default");
  setDefault(spec, "serviceAccount", spec.serviceAccountName);
  setDefault(spec, "enableServiceLinks", true);
  setDefault(spec, "priority", 0);
  setDefault(spec, "preemptionPolicy", "PreemptLowerPriority");
  if (create) {
    const tolerations = (spec.tolerations ?? []) as Doc[];
    const missing = DEFAULT_TOLERATIONS.filter((t) => !tolerations.some((have) => have.key === t.key));
    if (missing.length) spec.tolerations = [...tolerations, ...missing.map((t) => ({ ...t }))];
    o.status = { phase: "Pending", qosClass: qosClassOf(spec) }; // a new Pod's status is the server's, as in the API
  }
}

function defaultDaemonSet(o: Doc, create: boolean) {
  o.spec ??= {};
  const spec = o.spec as Doc;
  setDefault(spec, "updateStrategy", { type: "RollingUpdate" });
  if (spec.updateStrategy.type === "RollingUpdate")
    spec.updateStrategy.rollingUpdate = {
      maxUnavailable: 1,
      maxSurge: 0,
      ...(spec.updateStrategy.rollingUpdate ?? {}),
    };
  setDefault(spec, "revisionHistoryLimit", 10);
  spec.template ??= {};
  spec.template.spec ??= {};
  defaultPodSpec(spec.template.spec);
  if (create) {
    const zero = { currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0, numberReady: 0 };
    o.status = zero; // a new DaemonSet's status is the controller's to write
  }
}

function defaultNetworkPolicy(o: Doc) {
  o.spec ??= {};
  const spec = o.spec as Doc;
  setDefault(spec, "podSelector", {});
  for (const rule of [...(spec.ingress ?? []), ...(spec.egress ?? [])] as Doc[])
    for (const p of (rule?.ports ?? []) as Doc[]) setDefault(p, "protocol", "TCP");
  const egress = Array.isArray(spec.egress) && spec.egress.length > 0;
  if (!spec.policyTypes?.length) spec.policyTypes = egress ? ["Ingress", "Egress"] : ["Ingress"];
}

function defaultService(o: Doc, create: boolean) {
  o.spec ??= {};
  const spec = o.spec as Doc;
  setDefault(spec, "type", "ClusterIP");
  setDefault(spec, "sessionAffinity", "None");
  if (spec.type !== "ExternalName") {
    setDefault(spec, "ipFamilies", ["IPv4"]);
    setDefault(spec, "ipFamilyPolicy", "SingleStack");
    setDefault(spec, "internalTrafficPolicy", "Cluster");
  }
  for (const p of (spec.ports ?? []) as Doc[]) {
    setDefault(p, "protocol", "TCP");
    setDefault(p, "targetPort", p.port);
  }
  if (create) o.status = { loadBalancer: {} };
}

function defaultNamespace(o: Doc, create: boolean) {
  const name = o.metadata.name;
  o.metadata.labels = { ...(o.metadata.labels ?? {}), "kubernetes.io/metadata.name": name };
  o.spec = { finalizers: ["kubernetes"], ...(o.spec ?? {}) };
  if (create) o.status = { phase: "Active", ...(o.status ?? {}) };
}

/** Fills in what the API fills in (in place). `create` adds what only a new object gets (status). */
export function applyDefaults(d: ResourceDef, o: Doc, create: boolean): Doc {
  if (d.kind === "Pod") defaultPod(o, create);
  else if (d.kind === "DaemonSet") defaultDaemonSet(o, create);
  else if (d.kind === "NetworkPolicy") defaultNetworkPolicy(o);
  else if (d.kind === "Service") defaultService(o, create);
  else if (d.kind === "Namespace") defaultNamespace(o, create);
  else if (d.kind === "Secret") setDefault(o, "type", "Opaque");
  return o;
}
