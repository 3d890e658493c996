/**
 * Cluster mode: reads the DaemonSet, the ConfigMap, nodes, agent pods, every pod and
 * the `kubernetes` Service (one look, in parallel), and the tail of each agent pod's
 * weave-npc log (its drop lines), then evaluates the cluster checks.
 * An API server that cannot be reached or refuses is an E_API error: doctor could not
 * run (exit 2). Tested against net/lab/api-server.ts, which runs no kubelet and
 * has no exec API (see checks-cluster.ts for what that leaves unprobed).
 */
import { ApiException, AppsV1Api, CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { WeaveError } from "../../errors.ts";
import { describeError } from "../../k8s/node-peers.ts";
import { NAME, NAMESPACE } from "../../../manifests/objects.ts";
import { evaluateCluster, type ClusterFacts } from "../checks-cluster.ts";
import { sortResults } from "../evaluate.ts";
import type { CheckResult } from "../types.ts";
import { runProbes, type ProbeOptions } from "./probe-pods.ts"; // in-pod probes

const absent = (e: unknown) => {
  if (e instanceof ApiException && e.code === 404) return undefined;
  throw e;
};

export async function gatherCluster(kc: KubeConfig, now = Date.now()): Promise<ClusterFacts> {
  const server = kc.getCurrentCluster()?.server ?? "?";
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  try {
    const [daemonSet, configMap, nodes, agentPods, pods, kubernetesService] = await Promise.all([
      apps.readNamespacedDaemonSet({ name: NAME, namespace: NAMESPACE }).catch(absent),
      core.readNamespacedConfigMap({ name: NAME, namespace: NAMESPACE }).catch(absent),
      core.listNode(),
      core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `name=${NAME}` }),
      core.listPodForAllNamespaces(),
      core.readNamespacedService({ name: "kubernetes", namespace: "default" }).catch(absent),
    ]);
    const npcLogs = await readNpcLogs(core, agentPods.items);
    return {
      server,
      npcLogs,
      ...(daemonSet ? { daemonSet } : {}),
      ...(configMap ? { configMap } : {}),
      nodes: nodes.items,
      agentPods: agentPods.items,
      pods: pods.items,
      ...(kubernetesService ? { kubernetesService } : {}),
      now,
    };
  } catch (e) {
    throw new WeaveError("E_API", `cannot read the cluster at ${server}: ${describeError(e)}`, { cause: e });
  }
}

/** The last lines of each agent pod's weave-npc container log, by node; a log that cannot be read says why. */
async function readNpcLogs(core: CoreV1Api, pods: V1Pod[]): Promise<NonNullable<ClusterFacts["npcLogs"]>> {
  const withNpc = pods.filter((p) => p.spec?.nodeName && p.spec.containers.some((c) => c.name === "weave-npc"));
  const read = async (p: V1Pod) => {
    const name = p.metadata?.name ?? "";
    try {
      const text = await core.readNamespacedPodLog({
        name,
        namespace: NAMESPACE,
        container: "weave-npc",
        tailLines: 500,
      });
      return [p.spec!.nodeName!, { lines: String(text).split("\n").filter(Boolean) }] as const;
    } catch (e) {
      return [p.spec!.nodeName!, { lines: [], error: describeError(e) }] as const;
    }
  };
  return Object.fromEntries(await Promise.all(withNpc.map(read)));
}

/** `io.probes`: run the in-pod probes (probe-pods.ts) with these options; without it they are reported as not run. */
export async function doctorCluster(
  kc: KubeConfig,
  io: { progress(line: string): void; now?: number; probes?: ProbeOptions },
): Promise<{ target: string; checks: CheckResult[] }> {
  const server = kc.getCurrentCluster()?.server ?? "?";
  io.progress(`cluster ${kc.getCurrentContext()} at ${server}: reading the DaemonSet, nodes and pods`);
  const facts = await gatherCluster(kc, io.now);
  io.progress(`  ${facts.nodes.length} node(s), ${facts.agentPods.length} agent pod(s), ${facts.pods.length} pod(s)`);
  if (io.probes)
    facts.probes = await runProbes(kc, facts.nodes, facts.kubernetesService, { progress: io.progress, ...io.probes });
  return { target: kc.getCurrentContext(), checks: sortResults(evaluateCluster(facts)) };
}
