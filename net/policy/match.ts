/**
 * The API's matching rules in one place, shared by the reference evaluator and the
 * compiler so that both read the same semantics: which pods a policy selects, which pods
 * a peer names, whether an address is in an ipBlock, and which port numbers a rule's
 * ports mean on one destination pod (named ports resolve there, per pod).
 */
import { rangeHolds } from "../cidr.ts";
import type { IpBlockPeer, Namespace, Peer, Pod, Policy, PortRule, Protocol, SelectorPeer } from "./model.ts";
import { matches } from "./selector.ts";

/** Whether `policy` applies to `pod` (same namespace, podSelector matches); hostNetwork pods are no subjects. */
export function policySelects(policy: Policy, pod: Pod): boolean {
  return !pod.hostNetwork && pod.namespace === policy.namespace && matches(policy.podSelector, pod.labels);
}

/** Whether a selector peer names `pod`. */
export function peerSelectsPod(peer: SelectorPeer, pod: Pod, namespaces: Map<string, Namespace>): boolean {
  if (pod.hostNetwork) return false;
  if (peer.namespaceSelector) {
    const ns = namespaces.get(pod.namespace);
    const nsLabels = ns?.labels ?? { "kubernetes.io/metadata.name": pod.namespace };
    if (!matches(peer.namespaceSelector, nsLabels)) return false;
  } else if (pod.namespace !== peer.policyNamespace) return false;
  return peer.podSelector ? matches(peer.podSelector, pod.labels) : true;
}

/** Whether `ip` is inside the block's cidr and none of its excepts. */
export function blockHolds(peer: IpBlockPeer, ip: string): boolean {
  return rangeHolds(peer.cidr, ip) && !peer.except.some((e) => rangeHolds(e, ip));
}

/** Whether a peer names the endpoint (a pod, or a bare address for anything else). */
export function peerMatches(peer: Peer, ep: { pod?: Pod; ip: string }, namespaces: Map<string, Namespace>): boolean {
  if (peer.kind === "ipBlock") return blockHolds(peer, ep.ip);
  return ep.pod !== undefined && peerSelectsPod(peer, ep.pod, namespaces);
}

/** An inclusive port range of one protocol. */
export type PortSpan = { protocol: Protocol; first: number; last: number };

/**
 * What a rule's port entries mean on destination `pod` (undefined: an address that is no
 * pod, where named ports mean nothing). A named port must exist on the pod with the
 * entry's protocol; one that does not matches nothing.
 */
export function resolvePorts(ports: PortRule[], pod: Pod | undefined): PortSpan[] {
  const out: PortSpan[] = [];
  for (const p of ports) {
    if (p.port === undefined) out.push({ protocol: p.protocol, first: 0, last: 65535 });
    else if (typeof p.port === "number") out.push({ protocol: p.protocol, first: p.port, last: p.endPort ?? p.port });
    else
      for (const named of pod?.ports ?? [])
        if (named.name === p.port && named.protocol === p.protocol)
          out.push({ protocol: p.protocol, first: named.port, last: named.port });
  }
  return out;
}

/** Spans merged per protocol: sorted, without overlaps (nft refuses overlapping intervals). */
export function mergeSpans(spans: PortSpan[]): PortSpan[] {
  const out: PortSpan[] = [];
  const order = (s: PortSpan) => `${s.protocol}:${String(s.first).padStart(5, "0")}`;
  for (const s of [...spans].sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0))) {
    const last = out[out.length - 1];
    if (last && last.protocol === s.protocol && s.first <= last.last + 1) last.last = Math.max(last.last, s.last);
    else out.push({ ...s });
  }
  return out;
}
