/**
 * The lab's scheduler, the smallest one that lets `kubectl run` and a plain Pod manifest
 * work: a Pod without `spec.nodeName` is bound to the lab node that runs the fewest pods
 * (ties: the first by name), with the `Scheduled` event kube-scheduler records. No
 * resources, affinities, taints or selectors are weighed; a pod that names its node is
 * left alone. Bound pods are then the kubelet's (kubelet.ts).
 */
import type { Store } from "./api-server.ts";
import { readLab } from "./state.ts";

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects as the store holds them
type Doc = Record<string, any>;

export function schedulePending(lab: string, store: Store, log: (line: string) => void): void {
  const pods = store.list("v1", "Pod") as Doc[];
  const pending = pods.filter((p) => !p.spec?.nodeName && !p.metadata.deletionTimestamp);
  if (!pending.length) return;
  const nodes = (readLab(lab)?.nodes ?? []).map((n) => n.name).sort();
  if (!nodes.length) return;
  const load = new Map(nodes.map((n) => [n, 0]));
  for (const p of pods) if (load.has(p.spec?.nodeName)) load.set(p.spec.nodeName, load.get(p.spec.nodeName)! + 1);
  for (const pod of pending) {
    const node = nodes.reduce((best, n) => (load.get(n)! < load.get(best)! ? n : best));
    load.set(node, load.get(node)! + 1);
    store.put({ ...pod, spec: { ...pod.spec, nodeName: node } });
    recordScheduled(store, pod, node);
    log(`scheduled ${pod.metadata.namespace}/${pod.metadata.name} on ${node}`);
  }
}

function recordScheduled(store: Store, pod: Doc, node: string): void {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const { name, namespace, uid } = pod.metadata;
  store.put({
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: `${name}.scheduled`, namespace },
    involvedObject: { apiVersion: "v1", kind: "Pod", name, namespace, uid },
    type: "Normal",
    reason: "Scheduled",
    message: `Successfully assigned ${namespace}/${name} to ${node}`,
    source: { component: "default-scheduler" },
    reportingComponent: "default-scheduler",
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  });
}
