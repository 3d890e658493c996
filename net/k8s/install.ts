/**
 * `weave install` and `weave uninstall` against the API, and the Node event of
 * setup-cni's refusal. The manifests come from manifests/objects.ts; this file checks
 * the cluster, applies, waits and deletes.
 *
 * - Before anything is applied: the pod range must hold no node address and must not
 *   overlap the service range (given, else inferred and said so), and no object of
 *   ours may exist without our `app.kubernetes.io/managed-by` label (a Weave Net 2.x
 *   install has the same names: taking it over field by field would leave a mix).
 * - Apply is server-side apply with field manager "weave", object by object.
 * - Waiting polls the Node list, our pods and the DaemonSet status: done when every
 *   node has a Ready agent pod and the DaemonSet has rolled out its current generation
 *   (so pods of an older install do not count).
 * - Uninstall deletes by kind and name what carries our label, with the uid as a
 *   precondition; what is absent is fine, what is not ours is left and named.
 */
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  type CoreV1Event,
  type KubeConfig,
  type KubernetesObject,
  type V1Pod,
} from "@kubernetes/client-node";
import {
  asRange,
  contains,
  formatCidr,
  ipToNum,
  isIpv4,
  maskOf,
  overlaps,
  parseCidr,
  parseRange,
  rangeHolds,
  rangesOverlap,
  CidrError,
  type IpRange,
} from "../cidr.ts";
import { INFERRED_SERVICE_PREFIX, podState } from "../cluster-facts.ts";
import { WeaveError } from "../errors.ts";
import {
  describeObject,
  LABELS,
  manifestSettings,
  NAME,
  NAMESPACE,
  renderManifests,
  type ManifestSettings,
} from "../../manifests/objects.ts";
import { describeError } from "./node-peers.ts";

/** The field manager of every apply. */
export const FIELD_MANAGER = "weave";
const MANAGED = "app.kubernetes.io/managed-by";

type Log = (line: string) => void;

const isNotFound = (e: unknown) => e instanceof ApiException && e.code === 404;

/** An API failure as a WeaveError saying what was being done, and where. */
function apiFailure(kc: KubeConfig, doing: string, e: unknown): WeaveError {
  if (e instanceof WeaveError) return e;
  const code = e instanceof ApiException ? "E_API" : "E_API_UNREACHABLE";
  return new WeaveError(code, `${doing}: ${describeError(e)} (API server ${kc.getCurrentCluster()?.server})`, {
    cause: e,
  });
}

/**
 * Refuses (E_RANGE_OVERLAP) a pod range that holds a node's InternalIP/ExternalIP or
 * overlaps the service range: `serviceCidr` if given (one range, or an IPv4 and an IPv6
 * one separated by a comma, as a dual-stack kube-apiserver takes them), else the /12
 * around the `kubernetes` Service's ClusterIP. Returns what it checked, for the log.
 */
export async function checkRange(kc: KubeConfig, rangeText: string, serviceCidr?: string): Promise<string> {
  const range = parseCidr(rangeText);
  const podRange = asRange(range);
  const core = kc.makeApiClient(CoreV1Api);
  const nodes = await core.listNode().catch((e) => {
    throw apiFailure(kc, "listing nodes to check --ipalloc-range", e);
  });
  let addresses = 0;
  for (const n of nodes.items) {
    for (const a of n.status?.addresses ?? []) {
      if (a.type !== "InternalIP" && a.type !== "ExternalIP") continue;
      addresses++;
      if (rangeHolds(podRange, a.address)) {
        throw new WeaveError(
          "E_RANGE_OVERLAP",
          `--ipalloc-range ${rangeText} overlaps node ${n.metadata?.name}: its ${a.type} ${a.address} is inside it; ` +
            "pods and nodes would claim the same addresses. Choose a range that holds no node address.",
        );
      }
    }
  }
  const checked = `checked --ipalloc-range ${rangeText} against ${addresses} node address(es)`;
  if (serviceCidr !== undefined) {
    let serviceRanges: IpRange[];
    try {
      serviceRanges = serviceCidr.split(",").map((text) => parseRange(text.trim(), false));
    } catch (e) {
      if (e instanceof CidrError) throw new WeaveError("E_BAD_FLAG", `--service-cidr ${e.message}`);
      throw e;
    }
    if (serviceRanges.some((svc) => rangesOverlap(podRange, svc)))
      throw new WeaveError(
        "E_RANGE_OVERLAP",
        `--ipalloc-range ${rangeText} overlaps the service range ${serviceCidr} (--service-cidr): ` +
          "a pod address could shadow a Service. Choose a range outside it.",
      );
    return `${checked} and the service range ${serviceCidr} (--service-cidr)`;
  }
  let clusterIp: string | undefined;
  try {
    clusterIp = (await core.readNamespacedService({ name: "kubernetes", namespace: "default" })).spec?.clusterIP;
  } catch (e) {
    if (!isNotFound(e)) throw apiFailure(kc, "reading Service default/kubernetes to infer the service range", e);
  }
  if (!clusterIp || !isIpv4(clusterIp))
    return `${checked}; the service range is unknown (no IPv4 ClusterIP on Service default/kubernetes): pass --service-cidr to check it`;
  if (contains(range, ipToNum(clusterIp))) {
    throw new WeaveError(
      "E_RANGE_OVERLAP",
      `--ipalloc-range ${rangeText} overlaps the service range: ` +
        `it holds ${clusterIp}, the ClusterIP of Service default/kubernetes. ` +
        "Choose a range outside the cluster's service range.",
    );
  }
  const inferred = formatCidr({
    base: maskOf(ipToNum(clusterIp), INFERRED_SERVICE_PREFIX),
    prefix: INFERRED_SERVICE_PREFIX,
  });
  if (overlaps(range, parseCidr(inferred))) {
    throw new WeaveError(
      "E_RANGE_OVERLAP",
      `--ipalloc-range ${rangeText} may overlap the service range ${inferred}: ` +
        "that range is inferred, not read from the cluster " +
        `(the /${INFERRED_SERVICE_PREFIX} around ${clusterIp}, the ClusterIP of Service default/kubernetes; ` +
        `/${INFERRED_SERVICE_PREFIX} is kubeadm's default size). ` +
        "If the real service range (kube-apiserver --service-cluster-ip-range) is smaller, " +
        "pass it with --service-cidr and it is checked instead.",
    );
  }
  return `${checked} and the service range ${inferred} (inferred from ClusterIP ${clusterIp}; --service-cidr overrides)`;
}

/** Refuses (E_NOT_OURS) when an object of these names exists without our label. */
export async function checkOwnership(kc: KubeConfig, objs: readonly KubernetesObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const o of objs) {
    const found = await readOrUndefined(kc, api, o);
    if (found && found.metadata?.labels?.[MANAGED] !== LABELS[MANAGED]) {
      const ns = o.metadata?.namespace ? `-n ${o.metadata.namespace} ` : "";
      const remove = `kubectl delete ${o.kind?.toLowerCase()} ${ns}${o.metadata?.name}`;
      throw new WeaveError(
        "E_NOT_OURS",
        `${describeObject(o)} exists and was not made by weave install (no label ${MANAGED}=${LABELS[MANAGED]}); ` +
          `is Weave Net or another network installed? Remove it first (${remove}), then install.`,
      );
    }
  }
}

async function readOrUndefined(
  kc: KubeConfig,
  api: KubernetesObjectApi,
  o: KubernetesObject,
): Promise<KubernetesObject | undefined> {
  try {
    return await api.read({
      apiVersion: o.apiVersion!,
      kind: o.kind!,
      metadata: { name: o.metadata!.name!, namespace: o.metadata?.namespace },
    });
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw apiFailure(kc, `reading ${describeObject(o)}`, e);
  }
}

/** Server-side applies each object (field manager "weave", forced), logging each. */
export async function applyObjects(kc: KubeConfig, objs: readonly KubernetesObject[], log: Log): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const o of objs) {
    try {
      await api.patch(structuredClone(o), undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    } catch (e) {
      throw apiFailure(kc, `applying ${describeObject(o)}`, e);
    }
    log(`applied ${describeObject(o)}`);
  }
}

/** Where the agents are, after one look. */
export interface AgentProgress {
  nodes: number;
  ready: number;
  /** The DaemonSet has rolled its current generation out to every node it wants. */
  rolledOut: boolean;
  /** Nodes without a Ready agent, each with what its pod is doing. */
  waiting: { node: string; state: string }[];
}

/** One look at the nodes, our pods and the DaemonSet. */
export async function agentProgress(kc: KubeConfig): Promise<AgentProgress> {
  const core = kc.makeApiClient(CoreV1Api);
  const [nodes, pods, ds] = await Promise.all([
    core.listNode(),
    core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `name=${NAME}` }),
    kc.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ name: NAME, namespace: NAMESPACE }),
  ]);
  const newest = new Map<string, V1Pod>();
  for (const p of pods.items) {
    const node = p.spec?.nodeName;
    if (!node || p.metadata?.deletionTimestamp) continue;
    const had = newest.get(node);
    if (!had || new Date(p.metadata?.creationTimestamp ?? 0) >= new Date(had.metadata?.creationTimestamp ?? 0))
      newest.set(node, p);
  }
  const waiting: AgentProgress["waiting"] = [];
  for (const n of nodes.items) {
    const pod = newest.get(n.metadata?.name ?? "");
    if (!pod || !isReady(pod))
      waiting.push({ node: n.metadata?.name ?? "?", state: pod ? podState(pod) : "no agent pod yet" });
  }
  const st = ds.status;
  const desired = st?.desiredNumberScheduled ?? 0;
  const rolledOut =
    !!st &&
    (st.observedGeneration ?? 0) >= (ds.metadata?.generation ?? 0) &&
    (st.updatedNumberScheduled ?? 0) >= desired &&
    (st.numberReady ?? 0) >= desired;
  return { nodes: nodes.items.length, ready: nodes.items.length - waiting.length, rolledOut, waiting };
}

const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

/** "2/3 agents ready; waiting for n3 (pod ...: ...)". */
export function progressLine(p: AgentProgress): string {
  const head = `${p.ready}/${p.nodes} agents ready`;
  if (!p.waiting.length) return p.rolledOut ? head : `${head}; the DaemonSet is still rolling out`;
  const shown = p.waiting
    .slice(0, 3)
    .map((w) => `${w.node} (${w.state})`)
    .join(", ");
  return `${head}; waiting for ${shown}${p.waiting.length > 3 ? ` and ${p.waiting.length - 3} more` : ""}`;
}

/** Options of `waitForAgents`. */
export interface WaitOptions {
  timeoutMs: number;
  /** Time between looks (default 2000 ms). */
  pollMs?: number;
  log: Log;
}

/**
 * Polls until every node has a Ready agent and the DaemonSet has rolled out; logs a
 * line whenever the picture changes (and every 30 s). API failures while waiting are
 * logged and retried. E_TIMEOUT, with the last picture and where to look, at the end.
 */
export async function waitForAgents(kc: KubeConfig, o: WaitOptions): Promise<AgentProgress> {
  const start = Date.now();
  let said = "",
    saidAt = 0,
    last: AgentProgress | undefined,
    lastError = "";
  for (;;) {
    try {
      last = await agentProgress(kc);
      lastError = "";
      const line = progressLine(last);
      if (line !== said || Date.now() - saidAt > 30_000) {
        o.log(line);
        [said, saidAt] = [line, Date.now()];
      }
      if (last.waiting.length === 0 && last.rolledOut) return last;
    } catch (e) {
      const why = describeError(e);
      if (why !== lastError) o.log(`cannot see the agents yet: ${why}; retrying`);
      lastError = why;
    }
    if (Date.now() - start >= o.timeoutMs) {
      const stuck = last?.waiting[0];
      const where = stuck
        ? ` Look at: kubectl -n ${NAMESPACE} get pods -l name=${NAME} -o wide; kubectl describe node ${stuck.node} ` +
          "(a WeaveCNIConflict event there means another network's config is on that node)."
        : "";
      const state = last ? progressLine(last) : lastError;
      throw new WeaveError(
        "E_TIMEOUT",
        `agents not ready after ${Math.round(o.timeoutMs / 1000)} s: ${state}.${where} ` +
          "The objects are applied; run install again to keep waiting, or weave uninstall.",
      );
    }
    await Bun.sleep(Math.min(o.pollMs ?? 2000, Math.max(1, o.timeoutMs - (Date.now() - start))));
  }
}

/** What install was asked to do. */
export interface InstallOptions {
  kubeConfig: KubeConfig;
  settings: ManifestSettings;
  serviceCidr?: string;
  /** How long to wait for the agents; 0 applies and does not wait. */
  timeoutMs: number;
  pollMs?: number;
  log: Log;
}

/** Checks, applies, waits. Returns the last progress (undefined when not waiting). */
export async function install(o: InstallOptions): Promise<AgentProgress | undefined> {
  const objs = renderManifests(o.settings);
  o.log(await checkRange(o.kubeConfig, o.settings.ipallocRange, o.serviceCidr));
  await checkOwnership(o.kubeConfig, objs);
  await applyObjects(o.kubeConfig, objs, o.log);
  if (o.timeoutMs <= 0) return undefined;
  return waitForAgents(o.kubeConfig, { timeoutMs: o.timeoutMs, pollMs: o.pollMs, log: o.log });
}

/** What uninstall found, by "Kind namespace/name". */
export interface UninstallResult {
  deleted: string[];
  absent: string[];
  notOurs: string[];
}

/** Deletes what install makes (and the password Secret the ConfigMap names), newest first. */
export async function uninstall(kc: KubeConfig, log: Log): Promise<UninstallResult> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const cm = await readOrUndefined(kc, api, {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: NAME, namespace: NAMESPACE },
  });
  const secret =
    cm?.metadata?.labels?.[MANAGED] === LABELS[MANAGED]
      ? (cm as { data?: Record<string, string> }).data?.["password-secret"]
      : undefined;
  const objs = renderManifests(
    manifestSettings(secret ? { passwordSecret: { name: secret, password: new Uint8Array() } } : {}),
  ).reverse();
  const r: UninstallResult = { deleted: [], absent: [], notOurs: [] };
  for (const o of objs) {
    const what = describeObject(o);
    const found = await readOrUndefined(kc, api, o);
    if (!found) {
      r.absent.push(what);
      log(`not there: ${what}`);
    } else if (found.metadata?.labels?.[MANAGED] !== LABELS[MANAGED]) {
      r.notOurs.push(what);
      log(`left alone: ${what} (not made by weave install: no label ${MANAGED}=${LABELS[MANAGED]})`);
    } else {
      try {
        await api.delete(o, undefined, undefined, undefined, undefined, "Background", {
          preconditions: { uid: found.metadata?.uid },
        });
        r.deleted.push(what);
        log(`deleted ${what}`);
      } catch (e) {
        if (!isNotFound(e)) throw apiFailure(kc, `deleting ${what}`, e);
        r.absent.push(what);
        log(`not there: ${what}`);
      }
    }
  }
  return r;
}

/**
 * A Warning event on a Node, the way kubelet makes them (namespace "default", legacy
 * timestamps), so `kubectl describe node` lists it. `uid` is the Node's; kubectl also
 * finds node events whose uid is the node's name, which is the fallback.
 */
export function nodeEvent(
  node: { name: string; uid?: string },
  reason: string,
  message: string,
  component: string,
  now: Date,
): CoreV1Event {
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: `${node.name}.${now.getTime().toString(16)}`, namespace: "default" },
    involvedObject: { apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid ?? node.name },
    reason,
    message,
    type: "Warning",
    source: { component, host: node.name },
    reportingComponent: component,
    reportingInstance: node.name,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

/** Records `nodeEvent` on the named Node; throws a WeaveError when the API refuses. */
export async function recordNodeEvent(
  kc: KubeConfig,
  nodeName: string,
  reason: string,
  message: string,
  component: string,
): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const uid = await core.readNode({ name: nodeName }).then(
    (n) => n.metadata?.uid,
    () => undefined,
  );
  const body = nodeEvent({ name: nodeName, uid }, reason, message, component, new Date());
  await core.createNamespacedEvent({ namespace: "default", body }).catch((e) => {
    throw apiFailure(kc, `recording event ${reason} on node ${nodeName}`, e);
  });
}
