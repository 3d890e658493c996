/**
 * Tells Kubernetes the node's network is up: the NetworkUnavailable condition set to
 * False (reason WeaveIsUp), as Weave Net did, so the node becomes schedulable on clouds
 * that set it True at boot. A strategic-merge patch of the status subresource, since
 * the agent's ClusterRole grants nodes/status patch and nothing more.
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";

export function networkAvailablePatch(now: Date): Record<string, unknown> {
  const t = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  return {
    status: {
      conditions: [
        {
          type: "NetworkUnavailable",
          status: "False",
          reason: "WeaveIsUp",
          message: "Weave pod has set this",
          lastTransitionTime: t,
          lastHeartbeatTime: t,
        },
      ],
    },
  };
}

export async function markNetworkAvailable(kc: KubeConfig, nodeName: string, now = new Date()): Promise<void> {
  const api = kc.makeApiClient(CoreV1Api);
  await api.patchNodeStatus(
    { name: nodeName, body: networkAvailablePatch(now) },
    setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
  );
}
