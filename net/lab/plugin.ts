/**
 * Running the real CNI plugin inside a lab node, as kubelet runs it: CNI_* variables,
 * CNI_ARGS with the pod's identity (K8S_POD_NAMESPACE, K8S_POD_NAME,
 * K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID, IgnoreUnknown), the node's conflist on stdin.
 * A synchronous form for the CLI and tests, an asynchronous one for the lab's kubelet,
 * which must keep answering the API while pods are wired.
 */
import { pluginConfig, weaveConflist } from "../cni/conflist.ts";
import { join } from "node:path";
import { netnsPath } from "../host/netns.ts";

export type LabTools = {
  /** argv that runs `weave` (compiled binary, or bun + cli.ts). */
  weave: string[];
  /** Path of the CNI plugin binary (dist/cni/weave-net). */
  plugin: string;
  log(msg: string): void;
};

/** The node a plugin call runs on: its namespace, and its data dir (which holds its agent's socket). */
export type PluginNode = { netns: string; dataDir: string };

/** Where a lab node's agent serves what changes state (each node has its own: they share one filesystem). */
export function agentSocket(node: { dataDir: string }): string {
  return join(node.dataDir, "weave.sock");
}

/** The pod a plugin call is about. */
export type PluginPod = { name: string; namespace?: string; uid?: string; netns?: string; containerId: string };

export type Ran = { code: number; stdout: string; stderr: string };

const PATH = () => process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin";

function pluginCall(tools: LabTools, node: PluginNode, command: string, pod: PluginPod, prevResult?: unknown) {
  const args = [
    "IgnoreUnknown=1",
    `K8S_POD_NAMESPACE=${pod.namespace ?? "default"}`,
    `K8S_POD_NAME=${pod.name}`,
    `K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`,
    ...(pod.uid ? [`K8S_POD_UID=${pod.uid}`] : []),
  ];
  const env: Record<string, string> = {
    PATH: PATH(),
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.containerId,
    CNI_IFNAME: "eth0",
    CNI_PATH: `${tools.plugin.replace(/\/[^/]+$/, "")}:/usr/lib/cni`,
    CNI_ARGS: args.join(";"),
  };
  if (pod.netns) env.CNI_NETNS = pod.netns;
  const argv = ["nsenter", `--net=${netnsPath(node.netns)}`, tools.plugin];
  const conf = pluginConfig(weaveConflist(agentSocket(node)), 0, prevResult);
  const stdin = Buffer.from(JSON.stringify(conf));
  return { argv, env, stdin };
}

/** Run a command inside a named namespace (nsenter keeps the mount namespace and /sys). */
export function inNs(ns: string, cmd: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Ran {
  const r = Bun.spawnSync(["nsenter", `--net=${netnsPath(ns)}`, ...cmd], {
    env: { PATH: PATH(), ...opts.env },
    stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Run the plugin inside `node` as kubelet would, for `pod`, with the node's conflist. */
export function runPlugin(
  tools: LabTools,
  node: PluginNode,
  command: string,
  pod: PluginPod,
  prevResult?: unknown,
): Ran {
  const call = pluginCall(tools, node, command, pod, prevResult);
  const r = Bun.spawnSync(call.argv, { env: call.env, stdin: call.stdin, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

export async function runPluginAsync(tools: LabTools, node: PluginNode, command: string, pod: PluginPod): Promise<Ran> {
  const call = pluginCall(tools, node, command, pod);
  const p = Bun.spawn(call.argv, { env: call.env, stdin: call.stdin, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

/** The pod's address from an ADD result. */
export function resultIp(stdout: string): string {
  const result = JSON.parse(stdout) as { ips?: { address: string }[] };
  const address = result.ips?.[0]?.address;
  if (!address) throw new Error(`the ADD result has no address: ${stdout.trim()}`);
  return address.split("/")[0]!;
}
