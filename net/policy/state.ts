/**
 * The cluster as enforcement sees it, built from the API's objects in one place, so the
 * controller's view, `weave policy explain`'s and doctor's drift check cannot differ:
 * pods through podFromApi, namespaces through namespaceFromApi, policies through
 * policyFromApiOrClosed (a policy the API should have refused isolates what it selects
 * and allows nothing, as the controller enforces it). What is left out is said, not
 * dropped silently: pods that hold no address worth policing (finished, or none yet) are
 * listed with why, and so are the refused policies with their error.
 */
import type { V1Namespace, V1NetworkPolicy, V1Node, V1Pod } from "@kubernetes/client-node";
import { policySelects } from "./match.ts";
import {
  type ClusterState,
  type Namespace,
  namespaceFromApi,
  type Pod,
  podFromApi,
  policyFromApiOrClosed,
} from "./model.ts";

/** A node's name and addresses (its InternalIP/ExternalIP): traffic from them is the node's own. */
export type NodeAddresses = { name: string; addresses: string[] };

export type PolicyView = {
  state: ClusterState;
  /** Pods enforcement does not police, by namespace/name, with why. */
  skipped: Map<string, string>;
  /** Policies the API should have refused: enforced closed. */
  refused: { policy: string; error: string }[];
  nodes: NodeAddresses[];
};

export type ApiObjects = {
  pods: V1Pod[];
  namespaces: V1Namespace[];
  policies: V1NetworkPolicy[];
  nodes?: V1Node[];
};

export function policyView(o: ApiObjects): PolicyView {
  const pods: Pod[] = [];
  const skipped = new Map<string, string>();
  for (const p of o.pods) {
    const id = `${p.metadata?.namespace ?? "default"}/${p.metadata?.name ?? ""}`;
    const pod = podFromApi(p);
    if (!pod) skipped.set(id, `it is ${p.status?.phase}: its address may already be another pod's`);
    else if (!pod.ips.length) skipped.set(id, `it has no address yet (${p.status?.phase ?? "Pending"})`);
    else pods.push(pod);
  }
  const namespaces = new Map<string, Namespace>();
  for (const n of o.namespaces) {
    const ns = namespaceFromApi(n);
    namespaces.set(ns.name, ns);
  }
  const refused: PolicyView["refused"] = [];
  const policies = o.policies.map((np) => {
    const { policy, error } = policyFromApiOrClosed(np);
    if (error) refused.push({ policy: `${policy.namespace}/${policy.name}`, error: error.message });
    return policy;
  });
  const nodes = (o.nodes ?? []).map((n) => ({
    name: n.metadata?.name ?? "",
    addresses: (n.status?.addresses ?? [])
      .filter((a) => a.type === "InternalIP" || a.type === "ExternalIP")
      .map((a) => a.address),
  }));
  return { state: { pods, namespaces, policies }, skipped, refused, nodes };
}

/**
 * The addresses of pods some policy isolates (ingress or egress): the pods a connectivity
 * probe (doctor's pings) must not use, since a drop there is the policy's, not the network's.
 */
export function isolatedAddresses(view: PolicyView): Set<string> {
  const out = new Set<string>();
  for (const pod of view.state.pods) {
    const isolated = view.state.policies.some(
      (p) => (p.ingress !== undefined || p.egress !== undefined) && policySelects(p, pod),
    );
    if (isolated) for (const ip of pod.ips) out.add(ip);
  }
  return out;
}
