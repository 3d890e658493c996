/**
 * What NetworkPolicy enforcement reads from the API, read once: every NetworkPolicy, Pod
 * and Namespace (and the Nodes, whose addresses say which traffic is a node's own), in
 * parallel, into a PolicyView (net/policy/state.ts). For `weave policy explain` and
 * doctor's drift check; the controller itself follows the same objects with watches
 * (net/npc/watch.ts). An API that cannot be read is an E_API error naming the server.
 * The Nodes are optional: a user who may not list them still gets an answer, in which
 * node addresses are plain addresses outside.
 */
import { CoreV1Api, type KubeConfig, NetworkingV1Api, type V1Node } from "@kubernetes/client-node";
import { WeaveError } from "../errors.ts";
import { type PolicyView, policyView } from "../policy/state.ts";
import { describeError } from "./node-peers.ts";

export async function readPolicyView(kc: KubeConfig): Promise<PolicyView> {
  const server = kc.getCurrentCluster()?.server ?? "?";
  const core = kc.makeApiClient(CoreV1Api);
  const net = kc.makeApiClient(NetworkingV1Api);
  try {
    const [pods, namespaces, policies, nodes] = await Promise.all([
      core.listPodForAllNamespaces(),
      core.listNamespace(),
      net.listNetworkPolicyForAllNamespaces(),
      core.listNode().then(
        (l) => l.items,
        (): V1Node[] => [],
      ),
    ]);
    return policyView({ pods: pods.items, namespaces: namespaces.items, policies: policies.items, nodes });
  } catch (e) {
    throw new WeaveError("E_API", `cannot read policies, pods and namespaces at ${server}: ${describeError(e)}`, {
      cause: e,
    });
  }
}
