/**
 * What NetworkPolicy enforcement needs to know of the cluster, in plain values: pods
 * (namespace, name, addresses, labels, node, hostNetwork, named container ports),
 * namespaces (name, labels) and policies with the API's defaults applied
 * (policyTypes: Ingress always, Egress when the policy has an egress section; protocol
 * TCP). Built from the @kubernetes/client-node types; nothing here touches the system.
 *
 * Pods that are Succeeded or Failed keep their address in the API although it may
 * already belong to someone else (weave-npc's #2632), so they are left out; so is a pod
 * without an address. hostNetwork pods are kept but never match a pod selector: their
 * traffic is their node's (the API's option (b)), where an ipBlock on the node's address works.
 */
import type {
  V1LabelSelector,
  V1Namespace,
  V1NetworkPolicy,
  V1NetworkPolicyIngressRule,
  V1NetworkPolicyPeer,
  V1NetworkPolicyPort,
  V1Pod,
} from "@kubernetes/client-node";
import { CidrError, type IpRange, parseRange, rangesOverlap } from "../cidr.ts";
import { checkSelector, type Labels, PolicyError } from "./selector.ts";

export type Protocol = "TCP" | "UDP" | "SCTP";
export const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

export type NamedPort = { name: string; port: number; protocol: Protocol };

export type Pod = {
  namespace: string;
  name: string;
  /** The pod's addresses (status.podIPs), either family; empty while it has none. */
  ips: string[];
  labels: Labels;
  node?: string;
  hostNetwork: boolean;
  ports: NamedPort[];
};

export type Namespace = { name: string; labels: Labels };

/** A port entry with the defaults applied; no `port` means every port of the protocol. */
export type PortRule = { protocol: Protocol; port?: number | string; endPort?: number };

export type IpBlockPeer = { kind: "ipBlock"; cidr: IpRange; except: IpRange[] };
/** podSelector and/or namespaceSelector in one entry (AND); no namespaceSelector means the policy's namespace. */
export type SelectorPeer = {
  kind: "selector";
  policyNamespace: string;
  podSelector?: V1LabelSelector;
  namespaceSelector?: V1LabelSelector;
};
export type Peer = IpBlockPeer | SelectorPeer;

/** One ingress or egress rule: `peers`/`ports` undefined means any (absent or empty in the API). */
export type Rule = { peers?: Peer[]; ports?: PortRule[] };

export type Policy = {
  namespace: string;
  name: string;
  podSelector: V1LabelSelector;
  /** Present when the policy isolates ingress (Ingress in policyTypes); [] denies all. */
  ingress?: Rule[];
  egress?: Rule[];
};

export type ClusterState = {
  pods: Pod[];
  namespaces: Map<string, Namespace>;
  policies: Policy[];
};

export const policyId = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;

export function namespaceFromApi(ns: V1Namespace): Namespace {
  const name = ns.metadata?.name ?? "";
  // the API server adds this label to every namespace; older servers may not have
  const labels = { "kubernetes.io/metadata.name": name, ...(ns.metadata?.labels ?? {}) };
  return { name, labels };
}

/** The pod as enforcement sees it, or undefined when it holds no address worth policing. */
export function podFromApi(p: V1Pod): Pod | undefined {
  const phase = p.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return undefined;
  const listed = (p.status?.podIPs ?? []).map((x) => x.ip).filter(Boolean);
  const ips = listed.length ? listed : p.status?.podIP ? [p.status.podIP] : [];
  const ports: NamedPort[] = [];
  for (const c of [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])])
    for (const cp of c.ports ?? [])
      if (cp.name) ports.push({ name: cp.name, port: cp.containerPort, protocol: (cp.protocol ?? "TCP") as Protocol });
  return {
    namespace: p.metadata?.namespace ?? "default",
    name: p.metadata?.name ?? "",
    ips,
    labels: p.metadata?.labels ?? {},
    node: p.spec?.nodeName,
    hostNetwork: p.spec?.hostNetwork === true,
    ports,
  };
}

/**
 * A policy with the API's defaults; a PolicyError names the first field the API would
 * have refused (see policyFromApiOrClosed for what enforcement does with one).
 */
export function policyFromApi(np: V1NetworkPolicy): Policy {
  const namespace = np.metadata?.namespace ?? "default";
  const name = np.metadata?.name ?? "";
  const spec = np.spec;
  if (!spec) throw new PolicyError("spec", spec, "is missing");
  const podSelector = spec.podSelector ?? {};
  checkSelector(podSelector, "spec.podSelector");
  const types = policyTypes(np);
  const policy: Policy = { namespace, name, podSelector };
  if (types.includes("Ingress"))
    policy.ingress = (spec.ingress ?? []).map((r, i) =>
      rule(namespace, fromOf(r), r.ports, `spec.ingress[${i}]`, "from"),
    );
  if (types.includes("Egress"))
    policy.egress = (spec.egress ?? []).map((r, i) => rule(namespace, r.to, r.ports, `spec.egress[${i}]`, "to"));
  return policy;
}

/**
 * A policy the API should not have accepted still isolates what it selects, allowing
 * nothing (fail closed); when even its podSelector is unreadable it selects nothing.
 */
export function policyFromApiOrClosed(np: V1NetworkPolicy): { policy: Policy; error?: PolicyError } {
  try {
    return { policy: policyFromApi(np) };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    const namespace = np.metadata?.namespace ?? "default";
    const name = np.metadata?.name ?? "";
    let podSelector: V1LabelSelector = np.spec?.podSelector ?? {};
    try {
      checkSelector(podSelector, "spec.podSelector");
    } catch {
      podSelector = { matchExpressions: [{ key: "weave.works/unreadable-policy", operator: "Exists" }] };
    }
    const types = policyTypes(np);
    const policy: Policy = { namespace, name, podSelector };
    if (types.includes("Ingress")) policy.ingress = [];
    if (types.includes("Egress")) policy.egress = [];
    return { policy, error: e };
  }
}

/** `from` as the API's JSON has it; the client's deserialized objects call it `_from`. */
function fromOf(r: V1NetworkPolicyIngressRule): V1NetworkPolicyPeer[] | undefined {
  return (r as { from?: V1NetworkPolicyPeer[] }).from ?? r._from;
}

/** policyTypes as given, else Ingress plus Egress when there is an egress section. */
function policyTypes(np: V1NetworkPolicy): string[] {
  const given = np.spec?.policyTypes;
  if (given?.length) {
    const bad = given.find((t) => t !== "Ingress" && t !== "Egress");
    if (bad !== undefined) throw new PolicyError("spec.policyTypes", bad, "is not Ingress or Egress");
    return given;
  }
  return np.spec?.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"];
}

function rule(
  namespace: string,
  peers: V1NetworkPolicyPeer[] | undefined,
  ports: V1NetworkPolicyPort[] | undefined,
  field: string,
  peersField: string,
): Rule {
  const out: Rule = {};
  if (peers?.length) out.peers = peers.map((p, i) => peer(namespace, p, `${field}.${peersField}[${i}]`));
  if (ports?.length) out.ports = ports.map((p, i) => portRule(p, `${field}.ports[${i}]`));
  return out;
}

function peer(namespace: string, p: V1NetworkPolicyPeer, field: string): Peer {
  if (p.ipBlock) {
    if (p.podSelector || p.namespaceSelector)
      throw new PolicyError(field, p, "has an ipBlock beside a podSelector or namespaceSelector");
    const cidr = range(p.ipBlock.cidr, `${field}.ipBlock.cidr`);
    const except = (p.ipBlock.except ?? []).map((e, i) => {
      const r = range(e, `${field}.ipBlock.except[${i}]`);
      if (r.family !== cidr.family || r.prefix < cidr.prefix || !rangesOverlap(r, cidr))
        throw new PolicyError(`${field}.ipBlock.except[${i}]`, e, `is not inside the cidr ${p.ipBlock!.cidr}`);
      return r;
    });
    return { kind: "ipBlock", cidr, except };
  }
  if (!p.podSelector && !p.namespaceSelector)
    throw new PolicyError(field, p, "names no podSelector, namespaceSelector or ipBlock");
  if (p.podSelector) checkSelector(p.podSelector, `${field}.podSelector`);
  if (p.namespaceSelector) checkSelector(p.namespaceSelector, `${field}.namespaceSelector`);
  return {
    kind: "selector",
    policyNamespace: namespace,
    ...(p.podSelector ? { podSelector: p.podSelector } : {}),
    ...(p.namespaceSelector ? { namespaceSelector: p.namespaceSelector } : {}),
  };
}

function range(text: string, field: string): IpRange {
  try {
    // the API accepts a cidr with host bits set and means its network
    return parseRange(text, false);
  } catch (e) {
    if (e instanceof CidrError) throw new PolicyError(field, text, "is not a CIDR range");
    throw e;
  }
}

function portRule(p: V1NetworkPolicyPort, field: string): PortRule {
  const protocol = (p.protocol ?? "TCP") as Protocol;
  if (!PROTOCOLS.includes(protocol)) throw new PolicyError(`${field}.protocol`, p.protocol, "is not TCP, UDP or SCTP");
  const out: PortRule = { protocol };
  const port = p.port as number | string | undefined;
  if (port === undefined || port === null) {
    if (p.endPort !== undefined) throw new PolicyError(`${field}.endPort`, p.endPort, "needs a numeric port");
    return out;
  }
  const numeric = typeof port === "number" ? port : /^\d+$/.test(port) ? Number(port) : undefined;
  if (numeric === undefined) {
    if (p.endPort !== undefined) throw new PolicyError(`${field}.endPort`, p.endPort, "needs a numeric port");
    const name = String(port);
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(name) || name.length > 15)
      throw new PolicyError(`${field}.port`, port, "is neither a port number nor a port name");
    return { ...out, port: name };
  }
  if (!Number.isInteger(numeric) || numeric < 1 || numeric > 65535)
    throw new PolicyError(`${field}.port`, port, "is not a port from 1 to 65535");
  out.port = numeric;
  if (p.endPort !== undefined) {
    if (!Number.isInteger(p.endPort) || p.endPort < numeric || p.endPort > 65535)
      throw new PolicyError(`${field}.endPort`, p.endPort, `is not a port from ${numeric} to 65535`);
    out.endPort = p.endPort;
  }
  return out;
}
