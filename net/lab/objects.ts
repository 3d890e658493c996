/**
 * The Kubernetes objects of a lab, as pure builders: its Nodes (what a kubelet registers),
 * the Pods `weave lab pod add` and `lab up` create, the weave-net agent Pod of each node
 * (what the DaemonSet controller would make from the install manifests' template) and the
 * statuses a kubelet reports for them. No clock or process is read here: callers pass
 * what they observed.
 */
import { createHash } from "node:crypto";
import type { V1Container, V1DaemonSet, V1Node, V1Pod, V1PodStatus } from "@kubernetes/client-node";
import { NAME, NAMESPACE } from "../../manifests/settings.ts";
import { LAB_RUNTIME_PREFIX } from "../cluster-facts.ts";
import { VERSION } from "../version.ts";
import type { LabNode } from "./state.ts";

/** What the lab's nodes say they run (kubectl get nodes -o wide). */
export type NodeInfo = { kernelVersion: string; architecture: string; memoryKi: number; cpus: number };

export const LAB_KUBELET_VERSION = "v1.32.0-weave-lab";
export const LAB_RUNTIME = `${LAB_RUNTIME_PREFIX}${VERSION}`;
/** The image the lab's pods name: they run no process, only a network namespace. */
export const LAB_POD_IMAGE = "weave-lab/pod";

export function nodeObject(n: LabNode, info: NodeInfo): V1Node {
  const resources = { cpu: String(info.cpus), memory: `${info.memoryKi}Ki`, pods: "110" };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: n.name,
      labels: {
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": info.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": info.architecture,
      },
    },
    spec: {},
    status: {
      addresses: [
        { type: "InternalIP", address: n.ip },
        { type: "Hostname", address: n.name },
      ],
      capacity: resources,
      allocatable: resources,
      nodeInfo: {
        architecture: info.architecture,
        bootID: "",
        containerRuntimeVersion: LAB_RUNTIME,
        kernelVersion: info.kernelVersion,
        kubeProxyVersion: "",
        kubeletVersion: LAB_KUBELET_VERSION,
        machineID: "",
        operatingSystem: "linux",
        osImage: "weave lab (a network namespace)",
        systemUUID: "",
      },
    },
  };
}

/** The node's Lease in kube-node-lease, owned by its Node (what `kubectl describe node` shows). */
export function nodeLease(node: string, nodeUid: string, now: string) {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: {
      name: node,
      namespace: "kube-node-lease",
      ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node, uid: nodeUid }],
    },
    spec: { holderIdentity: node, leaseDurationSeconds: 40, renewTime: now.replace("Z", ".000000Z") },
  };
}

/** The kubelet's Ready condition (the agent adds NetworkUnavailable itself). */
export function nodeReady(now: string): NonNullable<V1Node["status"]>["conditions"] {
  return [
    {
      type: "Ready",
      status: "True",
      reason: "KubeletReady",
      message: "the lab's kubelet is posting ready status",
      lastHeartbeatTime: now as unknown as Date,
      lastTransitionTime: now as unknown as Date,
    },
  ];
}

export type PortSpec = { name: string; port: number; protocol: "TCP" | "UDP" | "SCTP" };

/** A lab pod: one container that names its ports (NetworkPolicy resolves named ports on them). */
export function podObject(p: {
  name: string;
  namespace: string;
  node: string;
  labels: Record<string, string>;
  ports: PortSpec[];
}): V1Pod {
  const ports = p.ports.map((x) => ({ name: x.name, containerPort: x.port, protocol: x.protocol }));
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
    spec: {
      nodeName: p.node,
      containers: [{ name: "main", image: LAB_POD_IMAGE, ...(ports.length ? { ports } : {}) }],
    },
  };
}

/** The agent pod's name on a node: weave-net-<5 characters>, stable for the node. */
export function agentPodName(node: string): string {
  const digest = createHash("sha256").update(node).digest();
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  const suffix = [...digest.subarray(0, 5)].map((b) => alphabet[b % alphabet.length]).join("");
  return `${NAME}-${suffix}`;
}

/** The DaemonSet's pod on `node`, as its controller makes it from the template. */
export function agentPod(ds: V1DaemonSet, node: string): V1Pod {
  const template = ds.spec!.template;
  const owner = {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    name: ds.metadata!.name!,
    uid: ds.metadata!.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: agentPodName(node),
      namespace: NAMESPACE,
      labels: { ...template.metadata?.labels, "controller-revision-hash": "lab", "pod-template-generation": "1" },
      // as the DaemonSet controller does: the template's annotations (prometheus.io/*) too
      ...(template.metadata?.annotations ? { annotations: { ...template.metadata.annotations } } : {}),
      ownerReferences: [owner],
    },
    spec: { ...template.spec!, nodeName: node },
  };
}

/** What the lab saw of a node's agent process. */
export type AgentSeen = { running: boolean; ready: boolean; restarts: number; startedAt: string; exitCode?: number };

/**
 * The agent pod's status: container `weave` follows the agent process (`seen`), container
 * `weave-npc` the node's `weave npc` (`npc`); the pod is Ready when both are.
 */
export function agentPodStatus(pod: V1Pod, n: LabNode, seen: AgentSeen, npc?: AgentSeen): V1PodStatus {
  const container = pod.spec!.containers[0]!;
  const init = pod.spec!.initContainers?.[0];
  const status = (c: V1Container, s: AgentSeen, pid: number) => ({
    name: c.name,
    image: c.image!,
    imageID: "",
    containerID: `${LAB_RUNTIME.split(":")[0]}://${pid}`,
    ready: s.ready,
    started: s.running,
    restartCount: s.restarts,
    state: s.running
      ? { running: { startedAt: s.startedAt } }
      : { terminated: { exitCode: s.exitCode ?? 0, reason: "Stopped", startedAt: s.startedAt } },
  });
  const weave = status(container, seen, n.agentPid);
  const npcSpec = pod.spec!.containers.find((c) => c.name === "weave-npc");
  const npcSeen = npc ?? { running: false, ready: false, restarts: 0, startedAt: seen.startedAt };
  const containerStatuses = npcSpec ? [weave, status(npcSpec, npcSeen, n.npcPid ?? 0)] : [weave];
  const ready = containerStatuses.every((c) => c.ready);
  const initDone = {
    name: init?.name ?? "weave-init",
    image: init?.image ?? container.image!,
    imageID: "",
    ready: true,
    restartCount: 0,
    state: { terminated: { exitCode: 0, reason: "Completed", startedAt: seen.startedAt } },
  };
  return {
    phase: "Running",
    hostIP: n.ip,
    hostIPs: [{ ip: n.ip }],
    podIP: n.ip,
    podIPs: [{ ip: n.ip }],
    qosClass: "Burstable",
    startTime: seen.startedAt,
    conditions: podConditions(ready, seen.startedAt),
    initContainerStatuses: init ? [initDone] : [],
    containerStatuses,
  } as unknown as V1PodStatus;
}

/** The statuses of a lab pod's containers: all running (ready) or all waiting for `why`. */
function labContainerStatuses(pod: V1Pod, state: { running: { startedAt: string } } | { waiting: object }) {
  const running = "running" in state;
  return pod.spec!.containers.map((c) => ({
    name: c.name,
    image: c.image ?? LAB_POD_IMAGE,
    imageID: "",
    ...(running ? { containerID: `weave-lab://${pod.metadata!.uid}`, started: true } : {}),
    ready: running,
    restartCount: 0,
    state,
  }));
}

/** A lab pod wired by CNI: Running, every container ready. */
export function runningPodStatus(pod: V1Pod, hostIP: string, ip: string, startedAt: string): V1PodStatus {
  return {
    phase: "Running",
    hostIP,
    hostIPs: [{ ip: hostIP }],
    podIP: ip,
    podIPs: [{ ip }],
    qosClass: "BestEffort",
    startTime: startedAt,
    conditions: podConditions(true, startedAt),
    containerStatuses: labContainerStatuses(pod, { running: { startedAt } }),
  } as unknown as V1PodStatus;
}

/** A lab pod whose CNI ADD failed (it is tried again): Pending, ContainerCreating. */
export function pendingPodStatus(pod: V1Pod, hostIP: string, why: string, since: string): V1PodStatus {
  const scheduled = { type: "PodScheduled", status: "True", lastTransitionTime: since };
  return {
    phase: "Pending",
    hostIP,
    startTime: since,
    qosClass: "BestEffort",
    conditions: [scheduled],
    containerStatuses: labContainerStatuses(pod, { waiting: { reason: "ContainerCreating", message: why } }),
  } as unknown as V1PodStatus;
}

function podConditions(ready: boolean, since: string) {
  const status = (ok: boolean) => (ok ? "True" : "False");
  return ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({
    type,
    status: status(type === "Ready" || type === "ContainersReady" ? ready : true),
    lastTransitionTime: since,
  }));
}

export function daemonSetStatus(ds: V1DaemonSet, nodes: number, ready: number): V1DaemonSet["status"] {
  return {
    currentNumberScheduled: nodes,
    desiredNumberScheduled: nodes,
    numberMisscheduled: 0,
    numberReady: ready,
    numberAvailable: ready,
    ...(nodes > ready ? { numberUnavailable: nodes - ready } : {}),
    updatedNumberScheduled: nodes,
    observedGeneration: ds.metadata?.generation ?? 1,
  };
}
