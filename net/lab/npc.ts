/**
 * `weave npc` in the lab: one per node, in the node's namespace beside its agent, with
 * the node's kubeconfig (as the DaemonSet's weave-npc container runs beside weave), its
 * log in <dataDir>/npc.log (the container's `kubectl logs -c weave-npc`), its pid in
 * lab.json (`npcPid`). It is ready once GET /status on :6781 answers 200, i.e. the
 * kernel holds what its first full list of policies, pods and namespaces asked for.
 * Stopping it (`lab npc stop`, or kill -9) leaves its rules in the node's kernel.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { WeaveError } from "../errors.ts";
import { httpGetInNetns } from "../host/netns-http.ts";
import { netnsPath } from "../host/netns.ts";
import { pidAlive, stopPid } from "../host/process.ts";
import type { LabTools } from "./plugin.ts";
import { findNode, type LabNode, type LabState, mustReadLab, updateLab } from "./state.ts";

export const NPC_PORT = 6781;

export const npcLog = (node: LabNode) => join(node.dataDir, "npc.log");

/** Starts `weave npc` of `node` in its namespace; returns its pid. */
export function startNpc(tools: LabTools, node: LabNode, s: LabState): number {
  const kubeconfig = s.controlPlane?.nodeKubeconfig;
  if (!kubeconfig) throw new WeaveError("E_LAB_API", `lab "${s.name}" has no API server for weave npc to follow`);
  const args = ["npc", "--node-name", node.name, "--kubeconfig", kubeconfig, "--resync", "10"];
  const argv = ["nsenter", `--net=${netnsPath(node.netns)}`, ...tools.weave, ...args];
  const logFd = openSync(npcLog(node), "a");
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", logFd, logFd] });
    child.unref();
    if (!child.pid) throw new WeaveError("E_LAB_START", `could not start weave npc of ${node.name}`);
    return child.pid;
  } finally {
    closeSync(logFd);
  }
}

/** Whether the node's controller answers /status with 200 (synced). */
export async function npcReady(node: LabNode): Promise<boolean> {
  if (!pidAlive(node.npcPid ?? 0)) return false;
  const r = await httpGetInNetns(netnsPath(node.netns), NPC_PORT, "/status");
  return r !== undefined && "status" in r && r.status === 200;
}

export async function waitNpcReady(node: LabNode, timeoutMs = 20000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(50)) {
    if (await npcReady(node)) return;
    if (!pidAlive(node.npcPid ?? 0)) {
      const tail = existsSync(npcLog(node)) ? readFileSync(npcLog(node), "utf8").trim().split("\n").slice(-5) : [];
      throw new WeaveError("E_LAB_NPC", `weave npc of ${node.name} exited:\n${tail.join("\n")}`);
    }
  }
  throw new WeaveError(
    "E_LAB_NPC",
    `weave npc of ${node.name} had not synced after ${timeoutMs / 1000}s (see ${npcLog(node)})`,
  );
}

/** Starts the controllers of `nodes` (recording their pids) and waits until each has synced. */
export async function startNpcs(tools: LabTools, lab: string, nodes: LabNode[]): Promise<void> {
  for (const node of nodes) {
    const pid = startNpc(tools, node, mustReadLab(lab));
    updateLab(lab, (state) => {
      findNode(state, node.name).npcPid = pid;
    });
  }
  const s = mustReadLab(lab);
  for (const node of nodes) await waitNpcReady(findNode(s, node.name));
}

/** `weave lab npc stop|start NODE`. */
export async function labNpc(lab: string, action: string, node: string, tools: LabTools): Promise<LabNode> {
  const n = findNode(mustReadLab(lab), node);
  if (action === "stop") {
    await stopPid(n.npcPid ?? 0);
    return n;
  }
  if (action !== "start") throw new WeaveError("E_USAGE", `unknown npc action "${action}" (stop, start)`);
  if (pidAlive(n.npcPid ?? 0))
    throw new WeaveError("E_NPC_RUNNING", `weave npc of ${n.name} is already running (pid ${n.npcPid})`);
  const pid = startNpc(tools, n, mustReadLab(lab));
  const after = updateLab(lab, (state) => {
    const mine = findNode(state, n.name);
    mine.npcPid = pid;
    mine.npcRestarts = (mine.npcRestarts ?? 0) + 1;
  });
  await waitNpcReady(findNode(after, n.name));
  return findNode(after, n.name);
}
