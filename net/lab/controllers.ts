/**
 * What keeps the lab's API objects true to the lab, several times a second: each lab node
 * is a Node (registered once, Ready, with its Lease in kube-node-lease, as its kubelet
 * would), each node runs the DaemonSet
 * weave-net's agent Pod (made from the install manifests' template, as the DaemonSet
 * controller would), and that pod's status follows the node's real agent process: Running
 * and Ready when it answers GET /status with 200 (the DaemonSet's readiness probe, made
 * from inside the node's namespace), not ready while it is not, terminated while it is
 * stopped, with the restart count of `lab agent start`; its container weave-npc follows
 * the node's `weave npc` the same way (GET /status on 6781). The DaemonSet's status counts
 * them. A node gone from lab.json loses its agent pod.
 */
import { cpus, release, totalmem } from "node:os";
import type { V1DaemonSet } from "@kubernetes/client-node";
import { NAME, NAMESPACE } from "../../manifests/settings.ts";
import { httpGetInNetns } from "../host/netns-http.ts";
import { netnsPath } from "../host/netns.ts";
import { pidAlive } from "../host/process.ts";
import type { Store } from "./api-server.ts";
import {
  type AgentSeen,
  agentPod,
  agentPodName,
  agentPodStatus,
  daemonSetStatus,
  type NodeInfo,
  nodeLease,
  nodeObject,
  nodeReady,
} from "./objects.ts";
import { type LabNode, readLab } from "./state.ts";

const AGENT_PORT = 6784;
const NPC_PORT = 6781;
/** How often a ready agent is probed (its readiness probe); one not ready yet, at every pass. */
const PROBE_MS = 1000;

export class LabControllers {
  private registered = new Set<string>();
  private seen = new Map<string, AgentSeen & { at: number; pid: number }>();
  private timer?: ReturnType<typeof setInterval>;
  private syncing = false;
  private readonly info: NodeInfo;

  constructor(
    private lab: string,
    private store: Store,
    private log: (line: string) => void,
  ) {
    const architecture = process.arch === "x64" ? "amd64" : process.arch;
    this.info = {
      kernelVersion: release(),
      architecture,
      memoryKi: Math.floor(totalmem() / 1024),
      cpus: cpus().length,
    };
  }

  start(periodMs = 200): void {
    this.timer = setInterval(() => void this.sync(), periodMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass; passes never overlap. */
  async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      const s = readLab(this.lab);
      if (!s) return;
      for (const n of s.nodes) this.register(n);
      const ds = this.store.get("apps/v1", "DaemonSet", NAME, NAMESPACE) as V1DaemonSet | undefined;
      if (!ds) return;
      const seen = await Promise.all(
        s.nodes.map((n) => this.observe(n.name, n, n.agentPid, n.agentRestarts, AGENT_PORT)),
      );
      const npcs = await Promise.all(
        s.nodes.map((n) => this.observe(`${n.name} npc`, n, n.npcPid ?? 0, n.npcRestarts, NPC_PORT)),
      );
      s.nodes.forEach((n, i) => {
        this.agentPodFor(ds, n, seen[i]!, npcs[i]!);
      });
      this.removeStrayAgentPods(s.nodes);
      const ready = seen.filter((x, i) => x.ready && npcs[i]!.ready).length;
      this.store.put({ ...ds, status: daemonSetStatus(ds, s.nodes.length, ready) });
    } catch (e) {
      this.log(`sync: ${(e as Error).message}`);
    } finally {
      this.syncing = false;
    }
  }

  /** The Node of a lab node, once (a later `kubectl delete node` is the user's to make). */
  private register(n: LabNode): void {
    if (this.registered.has(n.name)) return;
    this.registered.add(n.name);
    if (this.store.get("v1", "Node", n.name)) return;
    const node = nodeObject(n, this.info);
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    node.status!.conditions = nodeReady(now);
    this.store.put(node);
    this.store.put(nodeLease(n.name, this.store.get("v1", "Node", n.name)!.metadata.uid, now));
    this.log(`registered node ${n.name} (${n.ip})`);
  }

  /** One process of a node (its agent, its weave npc), probed on `port` like its readiness probe. */
  private async observe(id: string, n: LabNode, pid: number, restartCount: number | undefined, port: number) {
    const before = this.seen.get(id);
    const fresh = before?.ready && before.pid === pid && Date.now() - before.at < PROBE_MS;
    if (fresh && before.running === pidAlive(pid)) return before;
    const running = pidAlive(pid);
    const probe = running ? await httpGetInNetns(netnsPath(n.netns), port, "/status") : undefined;
    const ready = probe !== undefined && "status" in probe && probe.status === 200;
    const restarts = restartCount ?? 0;
    const sameRun = before && before.restarts === restarts && before.running === running;
    const startedAt = sameRun ? before.startedAt : new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const seen = {
      running,
      ready,
      restarts,
      startedAt,
      at: Date.now(),
      pid,
      ...(running ? {} : { exitCode: 0 }),
    };
    this.seen.set(id, seen);
    return seen;
  }

  private agentPodFor(ds: V1DaemonSet, n: LabNode, seen: AgentSeen, npc: AgentSeen): void {
    const name = agentPodName(n.name);
    const existing = this.store.get("v1", "Pod", name, NAMESPACE);
    const pod = existing ?? this.store.put(agentPod(ds, n.name));
    if (pod.metadata.deletionTimestamp) {
      this.store.delete("v1", "Pod", name, NAMESPACE);
      return;
    }
    this.store.put({ ...pod, status: agentPodStatus(pod, n, seen, npc) });
  }

  private removeStrayAgentPods(nodes: LabNode[]): void {
    const wanted = new Set(nodes.map((n) => agentPodName(n.name)));
    for (const p of this.store.list("v1", "Pod", NAMESPACE)) {
      const ours = p.metadata.ownerReferences?.some((o: { kind: string; name: string }) => o.name === NAME);
      if (ours && !wanted.has(p.metadata.name)) this.store.delete("v1", "Pod", p.metadata.name, NAMESPACE);
    }
  }
}
