/**
 * What the lab's nodes run behind `kubectl logs` and `kubectl exec` (the API server's
 * PodRuntime hooks). Lab pods run no process: exec runs the command on this machine inside
 * the pod's network namespace (`nsenter --net`, the mount namespace stays the machine's,
 * so `ip route` and `ping` are this machine's tools), and their log is empty. A weave-net
 * agent pod is host-network: exec runs in its node's namespace (with `weave` on PATH, so
 * `kubectl exec ... -c weave -- weave status` asks that node's agent), and the `weave`
 * container's log is that agent's log, `weave-npc`'s that of the node's `weave npc`.
 */
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { netnsPath } from "../host/netns.ts";
import type { ExecRequest, ExecSpawn, PodRuntime } from "./api-server.ts";
import type { LabTools } from "./plugin.ts";
import { labDir, readLab } from "./state.ts";

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects as the store holds them
type Doc = Record<string, any>;

export function labPodRuntime(
  lab: string,
  tools: LabTools,
  podNetns: (namespace: string, name: string) => string | undefined,
): PodRuntime {
  const emptyLog = join(labDir(lab), "empty.log");
  writeFileSync(emptyLog, "");
  // the compiled binary's folder has `weave` in it (run from source, `weave` is bun + cli.ts)
  const weaveDir = tools.weave.length === 1 ? `${dirname(tools.weave[0]!)}:` : "";
  const nodeOf = (pod: Doc) => readLab(lab)?.nodes.find((n) => n.name === pod.spec?.nodeName);

  return {
    logs(pod, container) {
      if (!pod.spec?.hostNetwork) return emptyLog;
      const node = nodeOf(pod);
      if (!node) return undefined;
      if (container === "weave-npc") return join(node.dataDir, "npc.log");
      return container === "weave" ? join(node.dataDir, "agent.log") : undefined;
    },
    exec(pod, _container, request: ExecRequest): ExecSpawn | { error: string } {
      const where = pod.spec?.hostNetwork
        ? nodeOf(pod)?.netns && netnsPath(nodeOf(pod)!.netns)
        : podNetns(pod.metadata.namespace, pod.metadata.name);
      if (!where) return { error: `pod ${pod.metadata.name} is not running on a lab node` };
      const path = `${weaveDir}${process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`;
      return { argv: ["nsenter", `--net=${where}`, ...request.command], env: { PATH: path, TERM: "xterm" } };
    },
  };
}
