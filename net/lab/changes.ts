/**
 * Changing a running lab: `weave lab pod add|del` and `weave lab node add|remove`.
 * Pods go through the lab's API, exactly as a Pod applied with kubectl (the kubelet wires
 * it); a node is removed as a cluster loses one: its pods deleted, its agent stopped, its
 * Node object deleted (the ring's heir then takes its address space over), its namespace
 * gone. Bad input is refused, naming the value, before anything is made.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { WeaveError } from "../errors.ts";
import { deleteNamedNetns } from "../host/netns.ts";
import { pidAlive, stopPid } from "../host/process.ts";
import { stopLeftoverWireguardGo } from "../host/wireguard-go.ts";
import type { PortSpec } from "./objects.ts";
import {
  createNode,
  createPods,
  labApi,
  nodePasswordFile,
  startAgent,
  startAgents,
  stopAgent,
  waitNodesListed,
  wgSocketDir,
  writePasswordFile,
} from "./lab.ts";
import { inNs, type LabTools } from "./plugin.ts";
import { passwordLines } from "./password.ts";
import { findNode, type LabNode, type LabPod, mustReadLab, updateLab } from "./state.ts";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

const bad = (flag: string, value: string, why: string) => new WeaveError("E_BAD_FLAG", `${flag} "${value}" ${why}`);

/** `--labels k=v,k2=v2`, with the API's rules for keys and values. */
export function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!text) return labels;
  for (const item of text.split(",")) {
    const eq = item.indexOf("=");
    if (eq < 0) throw bad("--labels", item, "is not key=value");
    const [key, value] = [item.slice(0, eq), item.slice(eq + 1)];
    const slash = key.lastIndexOf("/");
    const [prefix, name] = slash < 0 ? [undefined, key] : [key.slice(0, slash), key.slice(slash + 1)];
    if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)))
      throw bad("--labels", key, "has a prefix that is not a DNS subdomain (like example.com/name)");
    if (name.length > 63 || !LABEL_NAME.test(name))
      throw bad(
        "--labels",
        key,
        "is not a label key: at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends",
      );
    if (value.length > 63 || (value !== "" && !LABEL_NAME.test(value)))
      throw bad("--labels", item, "has a value that is not a label value (at most 63 characters, like a key's name)");
    if (key in labels) throw bad("--labels", key, "is given twice");
    labels[key] = value;
  }
  return labels;
}

/** `--port NAME=PORT/PROTO` (PROTO defaults to TCP): a named container port. */
export function parsePort(text: string): PortSpec {
  const m = /^([^=]+)=(\d{1,5})(?:\/([A-Za-z]+))?$/.exec(text);
  if (!m) throw bad("--port", text, "is not NAME=PORT/PROTO (like http=80/TCP)");
  const [name, portText, protoText] = [m[1]!, m[2]!, (m[3] ?? "TCP").toUpperCase()];
  if (name.length > 15 || !PORT_NAME.test(name) || !/[a-z]/.test(name) || name.includes("--"))
    throw bad("--port", text, "has a name that is not a port name: at most 15 lowercase letters, digits and '-'");
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad("--port", text, "has a port outside 1-65535");
  if (protoText !== "TCP" && protoText !== "UDP" && protoText !== "SCTP")
    throw bad("--port", text, "has a protocol that is not TCP, UDP or SCTP");
  return { name, port, protocol: protoText };
}

export type PodAdd = { name: string; node: string; namespace?: string; labels?: string; ports?: string[] };

/** `weave lab pod add`: a Pod through the API; returns it as lab.json has it once wired. */
export async function labPodAdd(lab: string, o: PodAdd): Promise<LabPod> {
  const s = mustReadLab(lab);
  const node = findNode(s, o.node);
  const namespace = o.namespace ?? "default";
  if (o.name.length > 253 || !DNS_SUBDOMAIN.test(o.name))
    throw bad("pod name", o.name, "is not a DNS subdomain (lowercase letters, digits, '-' and '.')");
  if (namespace.length > 63 || !DNS_LABEL.test(namespace))
    throw bad("--namespace", namespace, "is not a namespace name (lowercase letters, digits and '-')");
  const wanted = { name: o.name, namespace, node: node.name, labels: parseLabels(o.labels) };
  const ports = (o.ports ?? []).map(parsePort);
  const api = labApi(s);
  if (!(await api.get(`/api/v1/namespaces/${namespace}`)))
    throw new WeaveError(
      "E_NO_NAMESPACE",
      `namespace "${namespace}" does not exist (make it: kubectl create namespace ${namespace})`,
    );
  if (await api.get(`/api/v1/namespaces/${namespace}/pods/${o.name}`))
    throw new WeaveError("E_POD_EXISTS", `pod "${o.name}" already exists in namespace "${namespace}"`);
  try {
    await createPods(s, [{ ...wanted, ports }]);
  } catch (e) {
    await labPodDel(lab, o.name, namespace).catch(() => {});
    throw e;
  }
  const entry = mustReadLab(lab).pods.find((p) => p.namespace === namespace && p.name === o.name);
  if (!entry) throw new WeaveError("E_LAB_POD", `pod ${namespace}/${o.name} runs but lab.json does not list it`);
  return entry;
}

/** `weave lab pod del`: delete through the API and wait until the kubelet has run CNI DEL. */
export async function labPodDel(lab: string, name: string, namespace = "default", timeoutMs = 30000): Promise<void> {
  const api = labApi(mustReadLab(lab));
  const path = `/api/v1/namespaces/${namespace}/pods/${name}`;
  if (!(await api.delete(path)))
    throw new WeaveError("E_NO_POD", `no pod "${name}" in namespace "${namespace}" (see: kubectl get pods -A)`);
  for (const deadline = Date.now() + timeoutMs; await api.get(path); await Bun.sleep(50)) {
    if (Date.now() > deadline)
      throw new WeaveError("E_LAB_POD", `pod ${namespace}/${name} was not gone within ${timeoutMs / 1000}s`);
  }
}

/** The node joins the mesh, or (a password other than the lab's) is refused by it. */
export type NodeAdded = LabNode & { refused?: boolean };

/**
 * `weave lab node add`: the next node, its Node object and a ready, meshed agent. With
 * `password` (the caller's WEAVE_PASSWORD or --password-file) the node's agent gets that
 * one in a file of its own; when it is not the lab's, the node cannot join: its agent is
 * started and left running, refused by the mesh (its agent.log and the others' say so),
 * and nothing waits for it to be ready.
 */
export async function labNodeAdd(lab: string, tools: LabTools, o: { password?: Uint8Array } = {}): Promise<NodeAdded> {
  const s = mustReadLab(lab);
  const used = s.nodes.map((n) => Number(/-n(\d+)$/.exec(n.name)?.[1] ?? 0));
  const i = Math.max(0, ...used) + 1;
  if (i > 200) throw new WeaveError("E_LAB_FULL", `lab "${lab}" has no room for another node (at most n200)`);
  const labPassword = s.passwordFile && existsSync(s.passwordFile) ? readFileSync(s.passwordFile) : undefined;
  // accepted when it shares a password with the lab's file (either, while rotating)
  const shared = (x: Uint8Array, y: Uint8Array) =>
    passwordLines(x).some((a) => passwordLines(y).some((b) => a.equals(b)));
  const refused =
    (o.password === undefined) !== (labPassword === undefined) ||
    (o.password !== undefined && !shared(o.password, labPassword!));
  const node = createNode(lab, i);
  try {
    if (o.password && refused) {
      const file = join(node.dataDir, "password");
      writePasswordFile(file, o.password);
      updateLab(lab, (state) => {
        findNode(state, node.name).passwordFile = file;
      });
    } else if (!o.password && labPassword) {
      // No password for a lab that has one: the node's agent runs without (and is refused).
      updateLab(lab, (state) => {
        findNode(state, node.name).passwordFile = "";
      });
    }
    await waitNodesListed(s, [node.name]);
    if (refused) await startRefusedAgent(tools, lab, findNode(mustReadLab(lab), node.name));
    else await startAgents(tools, lab, [node]);
  } catch (e) {
    await labNodeRemove(lab, node.name, { force: true }).catch(() => {});
    throw e;
  }
  return { ...findNode(mustReadLab(lab), node.name), ...(refused ? { refused } : {}) };
}

/** Start an agent that the mesh will refuse; wait only until its API answers. */
async function startRefusedAgent(tools: LabTools, lab: string, node: LabNode, timeoutMs = 15000): Promise<void> {
  const pid = startAgent(tools, node, mustReadLab(lab));
  updateLab(lab, (state) => {
    findNode(state, node.name).agentPid = pid;
  });
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(50)) {
    if (!pidAlive(pid)) throw new WeaveError("E_LAB_AGENT", `the agent of ${node.name} exited (see its agent.log)`);
    if (inNs(node.netns, [...tools.weave, "report"]).code === 0) return;
  }
  throw new WeaveError("E_LAB_AGENT", `the agent of ${node.name} did not answer within ${timeoutMs / 1000}s`);
}

/**
 * `weave lab node remove`: its pods deleted through the API, then the node taken out of
 * lab.json (its agent pod goes), its agent stopped, its Node deleted (the heir reclaims
 * its space), its namespace and data removed.
 */
export async function labNodeRemove(lab: string, name: string, o: { force?: boolean } = {}): Promise<LabNode> {
  const s = mustReadLab(lab);
  const node = findNode(s, name);
  if (s.nodes.length === 1 && !o.force)
    throw new WeaveError("E_LAST_NODE", `${node.name} is the lab's only node; remove the whole lab: weave lab down`);
  const api = labApi(s);
  for (const p of s.pods.filter((x) => x.node === node.name)) await labPodDel(lab, p.name, p.namespace);
  updateLab(lab, (state) => {
    state.nodes = state.nodes.filter((n) => n.name !== node.name);
  });
  await stopPid(node.npcPid ?? 0);
  await stopAgent(node.agentPid);
  if (nodePasswordFile(node, s)) await stopLeftoverWireguardGo({ socketDir: wgSocketDir(node) });
  await api.delete(`/api/v1/nodes/${node.name}`);
  deleteNamedNetns(node.netns);
  rmSync(node.dataDir, { recursive: true, force: true });
  return node;
}
