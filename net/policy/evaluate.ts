/**
 * The reference evaluator: is a new connection from one endpoint to another, on one port
 * and protocol, allowed by the cluster's NetworkPolicies, and why. It reads the API's
 * semantics directly (no kernel, no compiled form), so it is what the compiler is tested
 * against, what a dropped packet's log line explains, and what `weave policy explain`
 * answers. Egress is judged on the source pod and ingress on the destination pod; both
 * must allow. Traffic between a node and its own pods is always allowed.
 */
import { type PortSpan, peerMatches, policySelects, resolvePorts } from "./match.ts";
import { type ClusterState, type Pod, type Policy, policyId, type Protocol, type Rule } from "./model.ts";

/** A pod, or an address that is no pod (`node`: the address is that node's own, host network included). */
export type Endpoint = { pod: Pod } | { ip: string; node?: string };

export type Side = {
  /** Policies that select the pod for this direction; empty: the pod is not isolated. */
  isolatedBy: string[];
  /** The first rule that allows it (policy and rule index), when isolated and allowed. */
  allowedBy?: { policy: string; rule: number };
  allowed: boolean;
};

export type Verdict = { allowed: boolean; egress: Side; ingress: Side; reason: string };

const OPEN: Side = { isolatedBy: [], allowed: true };

/** The end as a policed pod: a pod that is not hostNetwork (a hostNetwork pod's traffic is its node's). */
export function policedPod(e: Endpoint): Pod | undefined {
  return "pod" in e && !e.pod.hostNetwork ? e.pod : undefined;
}

/** Whether one end is a node and the other one of that node's own pods: never policed. */
export function betweenNodeAndOwnPod(from: Endpoint, to: Endpoint): boolean {
  const fromPod = policedPod(from);
  const toPod = policedPod(to);
  const nodeOf = (e: Endpoint) => ("pod" in e ? (e.pod.hostNetwork ? e.pod.node : undefined) : e.node);
  const toOwnPod = !!toPod?.node && nodeOf(from) === toPod.node;
  const fromOwnPod = !!fromPod?.node && nodeOf(to) === fromPod.node;
  return toOwnPod || fromOwnPod;
}

export function verdict(state: ClusterState, from: Endpoint, to: Endpoint, port: number, protocol: Protocol): Verdict {
  const fromPod = policedPod(from);
  const toPod = policedPod(to);
  if (betweenNodeAndOwnPod(from, to))
    return {
      allowed: true,
      egress: OPEN,
      ingress: OPEN,
      reason: "traffic between a node and its own pods is always allowed",
    };

  const target = { pod: toPod, ip: address(to) };
  const source = { pod: fromPod, ip: address(from) };
  const egress = fromPod
    ? side(state, fromPod, "egress", (r) => ruleAllows(state, r, target, toPod, port, protocol))
    : OPEN;
  const ingress = toPod
    ? side(state, toPod, "ingress", (r) => ruleAllows(state, r, source, toPod, port, protocol))
    : OPEN;
  const allowed = egress.allowed && ingress.allowed;
  return { allowed, egress, ingress, reason: explain(egress, ingress, from, to, port, protocol) };
}

/** The end's address: a pod's first. */
export function address(e: Endpoint): string {
  return "pod" in e ? (e.pod.ips[0] ?? "") : e.ip;
}

function side(state: ClusterState, pod: Pod, dir: "ingress" | "egress", allows: (r: Rule) => boolean): Side {
  const selecting = state.policies.filter((p) => p[dir] !== undefined && policySelects(p, pod));
  if (!selecting.length) return OPEN;
  const isolatedBy = selecting.map(policyId).sort();
  for (const p of sorted(selecting)) {
    const rule = p[dir]!.findIndex(allows);
    if (rule >= 0) return { isolatedBy, allowedBy: { policy: policyId(p), rule }, allowed: true };
  }
  return { isolatedBy, allowed: false };
}

const sorted = (ps: Policy[]) => [...ps].sort((a, b) => (policyId(a) < policyId(b) ? -1 : 1));

/** A rule allows when one of its peers names the other end (or it has none) and one of its ports fits. */
function ruleAllows(
  state: ClusterState,
  r: Rule,
  other: { pod?: Pod; ip: string },
  destination: Pod | undefined,
  port: number,
  protocol: Protocol,
): boolean {
  const peerOk = r.peers === undefined || r.peers.some((p) => peerMatches(p, other, state.namespaces));
  if (!peerOk) return false;
  if (r.ports === undefined) return true;
  const spans: PortSpan[] = resolvePorts(r.ports, destination);
  return spans.some((s) => s.protocol === protocol && port >= s.first && port <= s.last);
}

const name = (e: Endpoint) => ("pod" in e ? `${e.pod.namespace}/${e.pod.name}` : e.ip);

function explain(egress: Side, ingress: Side, from: Endpoint, to: Endpoint, port: number, protocol: Protocol): string {
  const what = `${name(from)} -> ${name(to)} ${port}/${protocol}`;
  const because = (s: Side, dir: string, pod: string) =>
    s.allowedBy
      ? `${dir} of ${pod} allowed by ${s.allowedBy.policy} rule ${s.allowedBy.rule}`
      : `${dir} of ${pod} is isolated by ${s.isolatedBy.join(", ")} and no rule of them allows this peer and port`;
  const parts: string[] = [];
  if (egress.isolatedBy.length) parts.push(because(egress, "egress", name(from)));
  if (ingress.isolatedBy.length) parts.push(because(ingress, "ingress", name(to)));
  if (!parts.length) return `${what}: allowed, no policy isolates either end`;
  const allowed = egress.allowed && ingress.allowed;
  return `${what}: ${allowed ? "allowed" : "dropped"}: ${parts.join("; ")}`;
}
