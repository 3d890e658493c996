/**
 * The printers of Pods and Nodes (kubernetes pkg/printers/internalversion/printers.go):
 * a pod's READY from its container statuses and STATUS as the printer derives it (init
 * containers, waiting and terminated reasons, Terminating); a node's STATUS from its Ready
 * condition, ROLES from its node-role labels, VERSION from nodeInfo.kubeletVersion.
 */
import type { Doc } from "./json.ts";
import { AGE, col, humanDuration, NAME, since } from "./print-format.ts";

export const POD_COLUMNS = [
  NAME,
  col("Ready"),
  col("Status"),
  col("Restarts"),
  AGE,
  col("IP", "string", 1),
  col("Node", "string", 1),
  col("Nominated Node", "string", 1),
  col("Readiness Gates", "string", 1),
];

const isRestartable = (c: Doc | undefined) => c?.restartPolicy === "Always";

/** The pod printer's READY, STATUS and RESTARTS. */
export function podState(pod: Doc, now = Date.now()): { ready: string; status: string; restarts: string } {
  const spec = pod.spec ?? {};
  const status = pod.status ?? {};
  const initSpecs = new Map(((spec.initContainers ?? []) as Doc[]).map((c) => [c.name, c]));
  let total = (spec.containers ?? []).length + [...initSpecs.values()].filter(isRestartable).length;
  let ready = 0;
  let restarts = 0;
  let lastRestart = 0;
  let reason: string = status.reason || status.phase || "";
  for (const c of (status.conditions ?? []) as Doc[])
    if (c.type === "PodScheduled" && c.reason === "SchedulingGated") reason = "SchedulingGated";
  const noteRestart = (cs: Doc) => {
    restarts += cs.restartCount ?? 0;
    const finished = Date.parse(cs.lastState?.terminated?.finishedAt ?? "");
    if (finished > lastRestart) lastRestart = finished;
  };
  let initializing = false;
  const initStatuses = (status.initContainerStatuses ?? []) as Doc[];
  for (const [i, cs] of initStatuses.entries()) {
    noteRestart(cs);
    const terminated = cs.state?.terminated;
    const waiting = cs.state?.waiting;
    if (terminated && terminated.exitCode === 0) continue;
    if (isRestartable(initSpecs.get(cs.name)) && cs.started) {
      if (cs.ready) ready++;
      continue;
    }
    if (terminated)
      reason = terminated.reason
        ? `Init:${terminated.reason}`
        : terminated.signal
          ? `Init:Signal:${terminated.signal}`
          : `Init:ExitCode:${terminated.exitCode}`;
    else if (waiting?.reason && waiting.reason !== "PodInitializing") reason = `Init:${waiting.reason}`;
    else reason = `Init:${i}/${initSpecs.size}`;
    initializing = true;
    break;
  }
  const initialized = ((status.conditions ?? []) as Doc[]).some((c) => c.type === "Initialized" && c.status === "True");
  if (!initializing || initialized) {
    restarts = 0;
    lastRestart = 0;
    for (const cs of initStatuses) if (isRestartable(initSpecs.get(cs.name))) noteRestart(cs);
    let hasRunning = false;
    const statuses = [...((status.containerStatuses ?? []) as Doc[])].reverse();
    for (const cs of statuses) {
      noteRestart(cs);
      const terminated = cs.state?.terminated;
      if (cs.state?.waiting?.reason) reason = cs.state.waiting.reason;
      else if (terminated?.reason) reason = terminated.reason;
      else if (terminated)
        reason = terminated.signal ? `Signal:${terminated.signal}` : `ExitCode:${terminated.exitCode}`;
      else if (cs.ready && cs.state?.running) {
        hasRunning = true;
        ready++;
      }
    }
    if (reason === "Completed" && hasRunning) {
      const podReady = ((status.conditions ?? []) as Doc[]).some((c) => c.type === "Ready" && c.status === "True");
      reason = podReady ? "Running" : "NotReady";
    }
  }
  const terminal = status.phase === "Succeeded" || status.phase === "Failed";
  if (pod.metadata?.deletionTimestamp && status.reason === "NodeLost") reason = "Unknown";
  else if (pod.metadata?.deletionTimestamp && !terminal) reason = "Terminating";
  total = Math.max(total, 0);
  const restartText =
    restarts !== 0 && lastRestart > 0 ? `${restarts} (${humanDuration(now - lastRestart)} ago)` : String(restarts);
  return { ready: `${ready}/${total}`, status: reason, restarts: restartText };
}

export function podRow(pod: Doc, now: number): unknown[] {
  const state = podState(pod, now);
  const gates = (pod.spec?.readinessGates ?? []) as Doc[];
  const conditions = (pod.status?.conditions ?? []) as Doc[];
  const trueGates = gates.filter((g) => conditions.find((c) => c.type === g.conditionType)?.status === "True").length;
  return [
    pod.metadata.name,
    state.ready,
    state.status,
    state.restarts,
    since(pod.metadata.creationTimestamp, now),
    pod.status?.podIPs?.[0]?.ip || pod.status?.podIP || "<none>",
    pod.spec?.nodeName || "<none>",
    pod.status?.nominatedNodeName || "<none>",
    gates.length ? `${trueGates}/${gates.length}` : "<none>",
  ];
}

export const NODE_COLUMNS = [
  NAME,
  col("Status"),
  col("Roles"),
  AGE,
  col("Version"),
  col("Internal-IP", "string", 1),
  col("External-IP", "string", 1),
  col("OS-Image", "string", 1),
  col("Kernel-Version", "string", 1),
  col("Container-Runtime", "string", 1),
];

/** The node-role.kubernetes.io/<role> and kubernetes.io/role labels, sorted. */
export function nodeRoles(labels: Record<string, string> = {}): string[] {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries(labels)) {
    if (k.startsWith("node-role.kubernetes.io/") && k.length > "node-role.kubernetes.io/".length)
      roles.add(k.slice("node-role.kubernetes.io/".length));
    else if (k === "kubernetes.io/role" && v) roles.add(v);
  }
  return [...roles].sort();
}

export function nodeRow(node: Doc, now: number): unknown[] {
  const ready = ((node.status?.conditions ?? []) as Doc[]).find((c) => c.type === "Ready");
  const status = [ready ? (ready.status === "True" ? "Ready" : "NotReady") : "Unknown"];
  if (node.spec?.unschedulable) status.push("SchedulingDisabled");
  const address = (type: string) =>
    ((node.status?.addresses ?? []) as Doc[]).find((a) => a.type === type)?.address ?? "<none>";
  const info = node.status?.nodeInfo ?? {};
  return [
    node.metadata.name,
    status.join(","),
    nodeRoles(node.metadata.labels).join(",") || "<none>",
    since(node.metadata.creationTimestamp, now),
    info.kubeletVersion ?? "",
    address("InternalIP"),
    address("ExternalIP"),
    info.osImage || "<unknown>",
    info.kernelVersion || "<unknown>",
    info.containerRuntimeVersion || "<unknown>",
  ];
}
