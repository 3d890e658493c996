/**
 * The lab's state file, /run/weave-lab/<name>/lab.json: every namespace, process and pod
 * the lab made, recorded as soon as it exists, so `down` removes exactly that (by name
 * and pid), even after a failed `up`. Two processes write it (the CLI: nodes and agents;
 * the lab's control plane: pods), so every change is a read-modify-write under a lock.
 */
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withFileLock } from "../host/file-lock.ts";
import { WeaveError } from "../errors.ts";

export const LAB_ROOT = "/run/weave-lab";

export type LabNode = {
  name: string;
  netns: string;
  ip: string;
  agentPid: number;
  dataDir: string;
  /** The node's CNI conf dir (what its kubelet would read), holding weave's conflist. */
  cniConfDir?: string;
  /** How often its agent was started again (the agent pod's restart count). */
  agentRestarts?: number;
  /** Its `weave npc` (the agent pod's weave-npc container), and how often that was started again. */
  npcPid?: number;
  npcRestarts?: number;
  /** Its own password file (`lab node add` with a password of its own), else the lab's. */
  passwordFile?: string;
};

export type LabPod = {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  node: string;
  /** Path of the pod's network namespace. */
  netns: string;
  ip: string;
  containerId: string;
};

export type ControlPlane = {
  pid: number;
  /** Where kubectl on this machine reaches the lab's API server. */
  url: string;
  /** Where the agents in the node namespaces reach it (on the underlay). */
  nodeUrl: string;
  /** The kubeconfig the agents run with. */
  nodeKubeconfig: string;
};

export type LabState = {
  name: string;
  underlay: string;
  outside?: { netns: string; ip: string };
  ipallocRange?: string;
  /** kubectl's kubeconfig for this lab. */
  kubeconfig?: string;
  controlPlane?: ControlPlane;
  /** With a password: the file (mode 0600) its agents read it from (--password-file). */
  passwordFile?: string;
  nodes: LabNode[];
  pods: LabPod[];
};

export function labDir(name: string): string {
  return join(LAB_ROOT, name);
}

const stateFile = (name: string) => join(labDir(name), "lab.json");

export function readLab(name: string): LabState | undefined {
  const f = stateFile(name);
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as LabState) : undefined;
}

/** The lab of this name; E_NO_LAB naming where it looked when there is none. */
export function mustReadLab(name: string): LabState {
  const s = readLab(name);
  if (!s)
    throw new WeaveError(
      "E_NO_LAB",
      `no lab named "${name}" (${stateFile(name)} not found); start one with: weave lab up`,
    );
  return s;
}

export function saveLab(s: LabState): void {
  const f = stateFile(s.name);
  writeFileSync(`${f}.tmp`, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(`${f}.tmp`, f);
}

/** Read, change and write lab.json under its lock; returns the state written. */
export function updateLab(name: string, change: (s: LabState) => void): LabState {
  return withFileLock(join(labDir(name), "lab.lock"), () => {
    const s = mustReadLab(name);
    change(s);
    saveLab(s);
    return s;
  });
}

/** The labs that are up (those with a lab.json). */
export function labsUp(): string[] {
  if (!existsSync(LAB_ROOT)) return [];
  return readdirSync(LAB_ROOT).filter((n) => existsSync(stateFile(n)));
}

/**
 * The lab a command means: `--name` when given, else the only lab that is up, else
 * "lab" (what `weave lab up` calls it by default).
 */
export function chooseLab(name: string | undefined): string {
  if (name) return name;
  const up = labsUp();
  return up.length === 1 ? up[0]! : "lab";
}

/** A node by its name (`lab-n2`) or its short name (`n2`). */
export function findNode(s: LabState, node: string): LabNode {
  const n = s.nodes.find((x) => x.name === node || x.name === `${s.name}-${node}`);
  if (!n) {
    const names = s.nodes.map((x) => x.name).join(", ");
    throw new WeaveError("E_NO_NODE", `lab "${s.name}" has no node "${node}" (nodes: ${names})`);
  }
  return n;
}

export function nodeIp(i: number): string {
  return `198.18.0.${10 + i}`;
}

export const OUTSIDE_IP = "198.18.0.254";
/** The lab's API server on the underlay, where the agents reach it. */
export const API_IP = "198.18.0.1";
export const API_PORT = 6443;
