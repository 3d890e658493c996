/**
 * The lab's kubelet, for every lab node at once. It watches the Pods of the lab's API
 * server (in process) and does what a kubelet does with the network of a pod bound to its
 * node: a Pod with `spec.nodeName` of a lab node (and not hostNetwork) gets a network
 * namespace of its own, wired by the real CNI plugin run inside that node's namespace
 * with the environment kubelet gives it, and is then reported Running with that address.
 * A failed ADD leaves the pod Pending (ContainerCreating, the error as a Warning event
 * FailedCreatePodSandBox) and is tried again every few seconds, as kubelet does. A pod
 * being deleted (graceful deletion: deletionTimestamp set) gets CNI DEL (tried again
 * every second while it fails: its agent may be restarting) and its namespace removed,
 * then is deleted for good. Each pod is recorded in lab.json from the moment
 * its namespace exists.
 *
 * Names: the pods `lab up` makes (`<lab>-n<i>-p<j>` in default) get a namespace of their
 * own name; any other pod `<lab>-k<n>` (lab.json says which is whose).
 */
import { createNamedNetns, deleteNamedNetns, listNamedNetns, netnsPath } from "../host/netns.ts";
import { RESOURCES, type Store } from "./api-server.ts";
import { pendingPodStatus, runningPodStatus } from "./objects.ts";
import { type LabTools, resultIp, runPluginAsync } from "./plugin.ts";
import { type LabNode, type LabPod, readLab, updateLab } from "./state.ts";

// biome-ignore lint/suspicious/noExplicitAny: the store holds Kubernetes objects as loose JSON
type Doc = Record<string, any>;

const RETRY_MS = 3000;
const DEL_RETRY_MS = 1000;
const POD = RESOURCES.find((r) => r.kind === "Pod")!;

type Attachment = {
  key: string;
  netnsName: string;
  node: string;
  /** The node's namespace and data dir, where the plugin runs and its agent listens. */
  on: { netns: string; dataDir: string };
  containerId: string;
  ip?: string;
};

export class LabKubelet {
  private attached = new Map<string, Attachment>();
  private busy = new Set<string>();
  private retries = new Map<string, ReturnType<typeof setTimeout>>();
  private unsubscribe?: () => void;
  private stopped = false;

  constructor(
    private lab: string,
    private tools: LabTools,
    private store: Store,
    private log: (line: string) => void,
  ) {}

  start(): void {
    const watcher = {
      def: POD,
      match: () => true,
      send: (e: { type: string; object: Doc }) => void this.onEvent(e.type, e.object),
    };
    const sub = this.store.subscribe(watcher);
    if (sub === "expired") throw new Error("the pod watch expired at once");
    this.unsubscribe = sub;
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    for (const t of this.retries.values()) clearTimeout(t);
  }

  /** The namespace path of a wired pod, for exec. */
  netnsOf(namespace: string, name: string): string | undefined {
    const a = this.attached.get(`${namespace}/${name}`);
    return a?.ip ? netnsPath(a.netnsName) : undefined;
  }

  private onEvent(type: string, pod: Doc): void {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (type === "DELETED") {
      void this.teardown(key);
      return;
    }
    if (pod.metadata.deletionTimestamp) {
      void this.terminate(pod, key);
      return;
    }
    const node = this.labNode(pod.spec?.nodeName);
    if (!node || pod.spec?.hostNetwork || this.attached.has(key) || this.busy.has(key)) return;
    void this.wire(pod, key, node);
  }

  private labNode(name: string | undefined) {
    return name ? readLab(this.lab)?.nodes.find((n) => n.name === name) : undefined;
  }

  private current(key: string): Doc | undefined {
    const [namespace, name] = key.split("/") as [string, string];
    return this.store.get("v1", "Pod", name, namespace);
  }

  private async wire(pod: Doc, key: string, node: LabNode): Promise<void> {
    this.busy.add(key);
    const attachment: Attachment = {
      key,
      netnsName: this.netnsName(pod),
      node: node.name,
      on: node,
      containerId: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex"),
    };
    const since = new Date().toISOString();
    let error: string | undefined;
    try {
      createNamedNetns(attachment.netnsName);
      this.attached.set(key, attachment);
      this.record(pod, attachment);
      const r = await runPluginAsync(this.tools, node, "ADD", this.pluginPod(pod, attachment));
      if (r.code !== 0) throw new Error(`CNI ADD: ${r.stdout.trim() || r.stderr.trim()}`);
      attachment.ip = resultIp(r.stdout);
    } catch (e) {
      error = (e as Error).message;
    } finally {
      this.busy.delete(key);
    }
    const now = this.current(key);
    if (!now || now.metadata.uid !== pod.metadata.uid || now.metadata.deletionTimestamp) {
      await this.teardown(key);
      if (now?.metadata.deletionTimestamp) this.finish(now);
      return;
    }
    if (error) {
      await this.teardown(key);
      this.report(now, "Warning", "FailedCreatePodSandBox", `Failed to create pod sandbox: ${error}`);
      this.store.put({ ...now, status: pendingPodStatus(now, node.ip, error, since) });
      this.log(`pod ${key} on ${node.name}: ${error}; trying again in ${RETRY_MS / 1000} s`);
      this.retries.set(
        key,
        setTimeout(() => {
          this.retries.delete(key);
          const again = this.current(key);
          if (again && !again.metadata.deletionTimestamp) this.onEvent("MODIFIED", again);
        }, RETRY_MS),
      );
      return;
    }
    this.record(pod, attachment);
    this.report(now, "Normal", "AddedInterface", `Add eth0 [${attachment.ip}] from weave`);
    this.store.put({ ...now, status: runningPodStatus(now, node.ip, attachment.ip!, since) });
  }

  /** Graceful deletion: network down first, then the pod goes for good. */
  private async terminate(pod: Doc, key: string): Promise<void> {
    if (this.busy.has(key)) return; // the ADD in flight sees the deletion and tears down
    await this.teardown(key);
    this.finish(pod);
  }

  private finish(pod: Doc): void {
    if (this.store.get("v1", "Pod", pod.metadata.name, pod.metadata.namespace))
      this.store.delete("v1", "Pod", pod.metadata.name, pod.metadata.namespace);
  }

  private async teardown(key: string): Promise<void> {
    clearTimeout(this.retries.get(key));
    this.retries.delete(key);
    const a = this.attached.get(key);
    if (!a) return;
    this.attached.delete(key);
    const [namespace, name] = key.split("/") as [string, string];
    const call = { name, namespace, netns: netnsPath(a.netnsName), containerId: a.containerId };
    // As kubelet does: DEL again until it succeeds (its agent may be restarting), so the
    // address is released; only a node that is gone, or a kubelet that stops, ends it.
    for (let attempt = 1; ; attempt++) {
      const r = await runPluginAsync(this.tools, a.on, "DEL", call);
      if (r.code === 0) break;
      const why = r.stdout.trim() || r.stderr.trim();
      if (this.stopped || !this.labNode(a.node)) {
        this.log(`pod ${key}: CNI DEL: ${why}; not tried again (${this.stopped ? "stopping" : "its node is gone"})`);
        break;
      }
      if (attempt === 1) this.log(`pod ${key}: CNI DEL: ${why}; trying again every ${DEL_RETRY_MS / 1000} s`);
      await Bun.sleep(DEL_RETRY_MS);
    }
    try {
      deleteNamedNetns(a.netnsName);
    } catch (e) {
      this.log(`pod ${key}: delete namespace ${a.netnsName}: ${(e as Error).message}`);
    }
    updateLab(this.lab, (s) => {
      s.pods = s.pods.filter((p) => !(p.namespace === namespace && p.name === name));
    });
  }

  private netnsName(pod: Doc): string {
    const own = `${pod.metadata.name}`;
    const taken = new Set(listNamedNetns());
    if (pod.metadata.namespace === "default" && own.startsWith(`${this.lab}-`) && !taken.has(own)) return own;
    for (let n = 1; ; n++) if (!taken.has(`${this.lab}-k${n}`)) return `${this.lab}-k${n}`;
  }

  private pluginPod(pod: Doc, a: Attachment) {
    return {
      name: pod.metadata.name,
      namespace: pod.metadata.namespace,
      uid: pod.metadata.uid,
      netns: netnsPath(a.netnsName),
      containerId: a.containerId,
    };
  }

  /** Into lab.json before ADD (so `lab down` finds a pod wired halfway), and again with its address. */
  private record(pod: Doc, a: Attachment): void {
    const entry: LabPod = {
      name: pod.metadata.name,
      namespace: pod.metadata.namespace,
      labels: { ...(pod.metadata.labels ?? {}) },
      node: a.node,
      netns: netnsPath(a.netnsName),
      ip: a.ip ?? "",
      containerId: a.containerId,
    };
    updateLab(this.lab, (s) => {
      s.pods = [...s.pods.filter((p) => !(p.namespace === entry.namespace && p.name === entry.name)), entry];
    });
  }

  /** An Event on the pod, as kubelet records one (count, first and last timestamp). */
  private report(pod: Doc, type: "Normal" | "Warning", reason: string, message: string): void {
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const name = `${pod.metadata.name}.${reason.toLowerCase()}`;
    const namespace = pod.metadata.namespace;
    const old = this.store.get("v1", "Event", name, namespace);
    const node = pod.spec?.nodeName;
    this.store.put({
      apiVersion: "v1",
      kind: "Event",
      metadata: { name, namespace },
      involvedObject: { apiVersion: "v1", kind: "Pod", name: pod.metadata.name, namespace, uid: pod.metadata.uid },
      type,
      reason,
      message,
      source: { component: "kubelet", host: node },
      reportingComponent: "kubelet",
      reportingInstance: node,
      firstTimestamp: old?.firstTimestamp ?? now,
      lastTimestamp: now,
      count: (old?.count ?? 0) + 1,
    });
  }
}
