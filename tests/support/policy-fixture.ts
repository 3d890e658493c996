/**
 * The upstream e2e model as plain values for unit tests of net/policy: namespaces x, y, z
 * (labelled ns=<name> plus the API's kubernetes.io/metadata.name), pods a, b, c in each
 * (labelled pod=<name>) spread over nodes n1..n3, each naming serve-80-tcp, serve-81-tcp,
 * serve-80-udp, serve-81-udp and serve-80-sctp; an address outside the cluster; and small
 * builders for NetworkPolicies as the API returns them.
 */
import type { V1NetworkPolicy, V1NetworkPolicySpec } from "@kubernetes/client-node";
import type { ClusterState, Namespace, Pod, Protocol } from "../../net/policy/model.ts";
import { policyFromApi } from "../../net/policy/model.ts";

export const NAMESPACES = ["x", "y", "z"] as const;
export const PODS = ["a", "b", "c"] as const;
export const NODES = ["n1", "n2", "n3"];
export const OUTSIDE = "198.18.0.254";

const ports = [80, 81].flatMap((port) =>
  (["TCP", "UDP", "SCTP"] as Protocol[])
    .filter((p) => p !== "SCTP" || port === 80)
    .map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, port, protocol })),
);

export function modelPods(): Pod[] {
  return NAMESPACES.flatMap((ns, i) =>
    PODS.map((name, j) => ({
      namespace: ns,
      name,
      ips: [`10.32.${i}.${j + 10}`],
      labels: { pod: name },
      node: NODES[(i + j) % 3],
      hostNetwork: false,
      ports,
    })),
  );
}

export function modelNamespaces(): Map<string, Namespace> {
  return new Map(NAMESPACES.map((n) => [n, { name: n, labels: { ns: n, "kubernetes.io/metadata.name": n } }] as const));
}

export function netpol(namespace: string, name: string, spec: V1NetworkPolicySpec): V1NetworkPolicy {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace, name }, spec };
}

/** A cluster with the model's pods and namespaces and these policies (API objects). */
export function cluster(...policies: V1NetworkPolicy[]): ClusterState {
  return { pods: modelPods(), namespaces: modelNamespaces(), policies: policies.map(policyFromApi) };
}

export function pod(s: ClusterState, id: string): Pod {
  const [ns, name] = id.split("/");
  const p = s.pods.find((x) => x.namespace === ns && x.name === name);
  if (!p) throw new Error(`no pod ${id}`);
  return p;
}
