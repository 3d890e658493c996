/**
 * `weave policy explain`'s answer, as data: the reference evaluator's verdict (evaluate.ts
 * decides; nothing here overrules it) with the findings behind it, rule by rule. For
 * each direction (the source's egress, the destination's ingress): whether the pod is
 * isolated and by which policies, and for every rule of those policies whether one of
 * its peers names the other end (which one; an ipBlock says whether it holds the address
 * or which except takes it out) and whether one of its ports fits (a named port resolved
 * on the destination pod, as enforcement resolves it). Pure; endpoints.ts turns the
 * command line's NS/POD, IP and port into the inputs.
 */
import { formatRange, rangeHolds } from "../cidr.ts";
import { type Endpoint, address, betweenNodeAndOwnPod, policedPod, verdict } from "./evaluate.ts";
import { peerMatches, policySelects, resolvePorts } from "./match.ts";
import type { ClusterState, Peer, Pod, Policy, PortRule, Protocol, Rule } from "./model.ts";
import { policyId } from "./model.ts";
import type { V1LabelSelector } from "@kubernetes/client-node";

export type Direction = "egress" | "ingress";

export type RuleFinding = {
  rule: number;
  /** What the rule's peers say of the other end. */
  peers: string;
  peerMatches: boolean;
  /** What the rule's ports say of the port. */
  ports: string;
  portMatches: boolean;
  allows: boolean;
};

export type PolicyFinding = { policy: string; rules: RuleFinding[] };

export type SideFinding = {
  direction: Direction;
  /** The pod this direction is judged on (namespace/name), or why nothing is judged. */
  subject?: string;
  notPoliced?: string;
  isolatedBy: string[];
  policies: PolicyFinding[];
  allowedBy?: { policy: string; rule: number };
  allowed: boolean;
};

export type EndpointView = { name: string; ip: string; pod?: string; node?: string; note?: string };

export type Explanation = {
  from: EndpointView;
  to: EndpointView;
  port: number;
  protocol: Protocol;
  /** The --port name, resolved on the destination pod. */
  portName?: string;
  allowed: boolean;
  reason: string;
  egress: SideFinding;
  ingress: SideFinding;
};

export function explain(
  state: ClusterState,
  from: Endpoint,
  to: Endpoint,
  port: number,
  protocol: Protocol,
  portName?: string,
): Explanation {
  const v = verdict(state, from, to, port, protocol);
  const nodeLocal = betweenNodeAndOwnPod(from, to);
  const fromPod = policedPod(from);
  const toPod = policedPod(to);
  const judge = (direction: Direction, subject: Pod | undefined, other: Endpoint): SideFinding => {
    const side = direction === "egress" ? v.egress : v.ingress;
    const base = { direction, isolatedBy: side.isolatedBy, allowed: side.allowed };
    const allowedBy = side.allowedBy ? { allowedBy: side.allowedBy } : {};
    if (nodeLocal)
      return { ...base, notPoliced: "traffic between a node and its own pods is never policed", policies: [] };
    if (!subject) return { ...base, notPoliced: notPolicedWhy(direction === "egress" ? from : to), policies: [] };
    const selecting = state.policies
      .filter((p) => p[direction] !== undefined && policySelects(p, subject))
      .sort((a, b) => (policyId(a) < policyId(b) ? -1 : 1));
    const findings = selecting.map((p) => policyFinding(state, p, direction, other, toPod, port, protocol));
    return { ...base, ...allowedBy, subject: `${subject.namespace}/${subject.name}`, policies: findings };
  };
  return {
    from: view(from),
    to: view(to),
    port,
    protocol,
    ...(portName ? { portName } : {}),
    allowed: v.allowed,
    reason: v.reason,
    egress: judge("egress", fromPod, to),
    ingress: judge("ingress", toPod, from),
  };
}

function view(e: Endpoint): EndpointView {
  if ("pod" in e) {
    const id = `${e.pod.namespace}/${e.pod.name}`;
    const note = e.pod.hostNetwork ? "hostNetwork: its traffic is its node's" : undefined;
    return {
      name: id,
      ip: address(e),
      pod: id,
      ...(e.pod.node ? { node: e.pod.node } : {}),
      ...(note ? { note } : {}),
    };
  }
  const note = e.node ? `an address of node ${e.node}` : "no pod: an address outside the pod network's pods";
  return { name: e.ip, ip: e.ip, ...(e.node ? { node: e.node } : {}), note };
}

function notPolicedWhy(e: Endpoint): string {
  if ("pod" in e) return `${e.pod.namespace}/${e.pod.name} is hostNetwork: policies never select it`;
  return `${e.ip} is no pod: only pods have policies`;
}

function policyFinding(
  state: ClusterState,
  p: Policy,
  direction: Direction,
  other: Endpoint,
  destination: Pod | undefined,
  port: number,
  protocol: Protocol,
): PolicyFinding {
  const otherEnd = { pod: policedPod(other), ip: address(other) };
  const rules = p[direction]!.map((r, i) => ruleFinding(state, r, i, direction, otherEnd, destination, port, protocol));
  return { policy: policyId(p), rules };
}

function ruleFinding(
  state: ClusterState,
  r: Rule,
  index: number,
  direction: Direction,
  other: { pod?: Pod; ip: string },
  destination: Pod | undefined,
  port: number,
  protocol: Protocol,
): RuleFinding {
  const field = direction === "ingress" ? "from" : "to";
  const otherName = other.pod ? `${other.pod.namespace}/${other.pod.name}` : other.ip;
  let peers = `any peer (the rule has no ${field})`;
  let peerOk = true;
  if (r.peers) {
    const hit = r.peers.findIndex((peer) => peerMatches(peer, other, state.namespaces));
    peerOk = hit >= 0;
    peers = peerOk
      ? `${field}[${hit}] ${peerText(r.peers[hit]!)} ${peerHit(r.peers[hit]!, other.ip, otherName)}`
      : `no peer names ${otherName}: ${r.peers.map((peer, i) => `${field}[${i}] ${peerMiss(peer, other.ip)}`).join("; ")}`;
  }
  let ports = `${port}/${protocol}: any port (the rule lists none)`;
  let portOk = true;
  if (r.ports) {
    const texts = r.ports.map((pr) => portText(pr, destination));
    portOk = resolvePorts(r.ports, destination).some(
      (s) => s.protocol === protocol && port >= s.first && port <= s.last,
    );
    ports = `${port}/${protocol} is ${portOk ? "" : "not "}in ${texts.join(", ")}`;
  }
  return { rule: index, peers, peerMatches: peerOk, ports, portMatches: portOk, allows: peerOk && portOk };
}

/** A selector as kubectl writes one: `app=web,tier in (a,b),!legacy`; {} is "all". */
export function selectorText(s: V1LabelSelector): string {
  const labels = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  const expressions = (s.matchExpressions ?? []).map((e) => {
    const values = `(${(e.values ?? []).join(",")})`;
    if (e.operator === "In") return `${e.key} in ${values}`;
    if (e.operator === "NotIn") return `${e.key} notin ${values}`;
    return e.operator === "Exists" ? e.key : `!${e.key}`;
  });
  const all = [...labels, ...expressions];
  return all.length ? all.join(",") : "all";
}

function peerText(peer: Peer): string {
  if (peer.kind === "ipBlock") {
    const except = peer.except.length ? ` except ${peer.except.map(formatRange).join(", ")}` : "";
    return `ipBlock ${formatRange(peer.cidr)}${except}`;
  }
  const pods = peer.podSelector ? `pods ${selectorText(peer.podSelector)}` : "all pods";
  const where = peer.namespaceSelector
    ? `of namespaces ${selectorText(peer.namespaceSelector)}`
    : `of namespace ${peer.policyNamespace}`;
  return `(${pods} ${where})`;
}

function peerHit(peer: Peer, ip: string, name: string): string {
  return peer.kind === "ipBlock" ? `holds ${ip}` : `names ${name}`;
}

function peerMiss(peer: Peer, ip: string): string {
  if (peer.kind !== "ipBlock") return peerText(peer);
  const excepted = rangeHolds(peer.cidr, ip) ? peer.except.find((e) => rangeHolds(e, ip)) : undefined;
  if (excepted) return `${peerText(peer)} (${ip} is in its except ${formatRange(excepted)})`;
  return `${peerText(peer)} (does not hold ${ip})`;
}

/** A port entry, a named one with what it resolves to on the destination pod. */
function portText(p: PortRule, destination: Pod | undefined): string {
  if (p.port === undefined) return `any ${p.protocol} port`;
  if (typeof p.port === "number") return `${p.port}${p.endPort ? `-${p.endPort}` : ""}/${p.protocol}`;
  if (!destination) return `${p.port}/${p.protocol} (a named port: the destination is no pod, so it names nothing)`;
  const named = destination.ports.find((x) => x.name === p.port && x.protocol === p.protocol);
  const on = `${destination.namespace}/${destination.name}`;
  return named
    ? `${p.port}/${p.protocol} (= ${named.port}/${p.protocol} on ${on})`
    : `${p.port}/${p.protocol} (${on} has no ${p.protocol} port named ${p.port}: it names nothing)`;
}
