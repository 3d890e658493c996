/**
 * The builders the cases are written with, shaped like upstream's helpers (policies.go,
 * GenNetworkPolicyWithNameAndPodMatchLabel with SetSpecIngressRules / SetSpecEgressRules: the
 * rules given, and their direction listed in policyTypes), and the few policies and
 * expectations several cases share.
 */
import type { EgressRule, IngressRule, LabelSelector, Labels, NetworkPolicy, PolicyPeer } from "../model.ts";
import type { Action, Probe, Step } from "../scenario.ts";
import type { Reachability } from "../truth-table.ts";

export const NS_NAME = "kubernetes.io/metadata.name";
export const labels = (matchLabels: Labels = {}): LabelSelector => ({ matchLabels });
export const pod = (name: string) => labels({ pod: name });
export const nsIs = (ns: string) => labels({ [NS_NAME]: ns });
export const nsNotIn = (...ns: string[]) => ({
  matchExpressions: [{ key: NS_NAME, operator: "NotIn" as const, values: ns }],
});

export type Parts = { ingress?: IngressRule[]; egress?: EgressRule[] };
export function policy(namespace: string, name: string, podSelector: LabelSelector, parts: Parts): NetworkPolicy {
  const policyTypes = [...(parts.ingress ? ["Ingress" as const] : []), ...(parts.egress ? ["Egress" as const] : [])];
  return { metadata: { name, namespace }, spec: { podSelector, ...parts, policyTypes } };
}
export const from = (...peers: PolicyPeer[]): IngressRule => ({ from: peers });
export const to = (...peers: PolicyPeer[]): EgressRule => ({ to: peers });

export const create = (policy: NetworkPolicy): Action => ({ kind: "create-policy", policy });
export const update = (policy: NetworkPolicy): Action => ({ kind: "update-policy", policy });
export const TCP80: Probe = { port: 80, protocol: "TCP" };
export const TCP81: Probe = { port: 81, protocol: "TCP" };
export const UDP80: Probe = { port: 80, protocol: "UDP" };
export const UDP81: Probe = { port: 81, protocol: "UDP" };
export const step = (actions: Action[], probe: Probe, upstream: (r: Reachability) => void = () => {}): Step => ({
  actions,
  probe,
  upstream,
});
export const allTrue = () => {};
export const SCTP80: Probe = { port: 80, protocol: "SCTP" };
export const viaService = (p: Probe): Probe => ({ ...p, via: "service" });
export const denyIngressX = policy("x", "deny-ingress", labels(), { ingress: [] });

export const xaFromOnly = (name: string, ...peers: PolicyPeer[]) =>
  create(policy("x", name, pod("a"), { ingress: [from(...peers)] }));
export const onlyFromY = (r: Reachability) =>
  r
    .expectPeer({ namespace: "x" }, { namespace: "x", pod: "a" }, false)
    .expectPeer({ namespace: "z" }, { namespace: "x", pod: "a" }, false);

/** x/a admits namespace y on TCP `port` only (upstream's allowPort81Policy and its port-80 twin). */
export function allowFromYOn(name: string, port: number): NetworkPolicy {
  return policy("x", name, pod("a"), {
    ingress: [{ from: [{ namespaceSelector: nsIs("y") }], ports: [{ port, protocol: "TCP" }] }],
  });
}

export function onlyYReachesXa(r: Reachability): void {
  r.expectPeer({ namespace: "x" }, { namespace: "x", pod: "a" }, false)
    .expectPeer({ namespace: "y" }, { namespace: "x", pod: "a" }, true)
    .expectPeer({ namespace: "z" }, { namespace: "x", pod: "a" }, false);
}

export function fromXa(): IngressRule {
  return from({ namespaceSelector: nsIs("x"), podSelector: pod("a") });
}

export function onlyFromYaStep(probe: Probe): Step {
  const p = policy("x", "allow-ns-y-pod-a-via-namespace-pod-selector", pod("a"), {
    ingress: [from({ namespaceSelector: nsIs("y"), podSelector: pod("a") })],
  });
  return step([create(p)], probe, (r) => r.expectAllIngress("x/a", false).expect("y/a", "x/a", true));
}

/** Upstream's makeLargeCIDRForIP: the /4 that holds the address. */
export function largeCidr(ip: string): string {
  const first = Number(ip.split(".")[0]) & 0xf0;
  return `${first}.0.0.0/4`;
}
