/**
 * An independent model of networking.k8s.io/v1 NetworkPolicy: given namespaces, pods and
 * policies, may `client` open a connection to `server` on `port`/`protocol`? It is the
 * truth of the e2e truth tables, so it is written from the API's documented semantics
 * (../shared/notes/network-policy.md, section 1, item by item) and imports nothing of the
 * code under test (net/policy/): a bug there cannot hide by being copied here.
 *
 * Each rule of the checklist is one function below, in the order of the checklist:
 * isolation per direction, the policyTypes default, the union of rules, peers (AND inside
 * one entry, OR across entries, empty selectors, matchExpressions), ipBlock with except
 * (pod addresses included), ports (numbers, endPort ranges, names resolved on the
 * destination pod, protocols with TCP as the default), and a pod always reaching itself.
 * Policies are taken as written (before the API server's defaulting): the model applies
 * the defaults itself.
 */

export type Protocol = "TCP" | "UDP" | "SCTP";
export type Labels = Record<string, string>;

export type LabelSelector = {
  matchLabels?: Labels;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
};
export type IPBlock = { cidr: string; except?: string[] };
export type PolicyPeer = { podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: IPBlock };
export type PolicyPort = { protocol?: Protocol; port?: number | string; endPort?: number };
export type IngressRule = { from?: PolicyPeer[]; ports?: PolicyPort[] };
export type EgressRule = { to?: PolicyPeer[]; ports?: PolicyPort[] };
export type NetworkPolicy = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string };
  spec: {
    podSelector: LabelSelector;
    policyTypes?: ("Ingress" | "Egress")[];
    ingress?: IngressRule[];
    egress?: EgressRule[];
  };
};

export type ContainerPort = { name?: string; containerPort: number; protocol?: Protocol };
export type ModelPod = { namespace: string; name: string; labels: Labels; ip: string; ports: ContainerPort[] };
export type ModelNamespace = { name: string; labels: Labels };
export type ModelCluster = { namespaces: ModelNamespace[]; pods: ModelPod[]; policies: NetworkPolicy[] };

/** One connection attempt: `client` opens `protocol` to `server`'s address on `port`. */
export type Connection = { client: ModelPod; server: ModelPod; port: number; protocol: Protocol };

/** The verdict: the client's egress and the server's ingress must both allow it. */
export function allowed(c: ModelCluster, conn: Connection): boolean {
  if (conn.client === conn.server) return true; // a pod cannot block itself
  return egressAllows(c, conn) && ingressAllows(c, conn);
}

/** Ingress of the server: open unless a policy of its namespace selects it for Ingress; then the union of their rules. */
export function ingressAllows(c: ModelCluster, conn: Connection): boolean {
  const isolating = isolatingPolicies(c, conn.server, "Ingress");
  if (!isolating.length) return true;
  return isolating.some((p) =>
    (p.spec.ingress ?? []).some(
      (rule) => peersMatch(c, p, rule.from, conn.client) && portsMatch(rule.ports, conn, conn.server),
    ),
  );
}

/** Egress of the client, the same way; named ports are resolved on the server (the destination). */
export function egressAllows(c: ModelCluster, conn: Connection): boolean {
  const isolating = isolatingPolicies(c, conn.client, "Egress");
  if (!isolating.length) return true;
  return isolating.some((p) =>
    (p.spec.egress ?? []).some(
      (rule) => peersMatch(c, p, rule.to, conn.server) && portsMatch(rule.ports, conn, conn.server),
    ),
  );
}

/** The policies that select `pod` (same namespace, spec.podSelector) and list `direction`. */
export function isolatingPolicies(c: ModelCluster, pod: ModelPod, direction: "Ingress" | "Egress"): NetworkPolicy[] {
  return c.policies.filter(
    (p) =>
      p.metadata.namespace === pod.namespace &&
      selectorMatches(p.spec.podSelector, pod.labels) &&
      policyTypes(p).includes(direction),
  );
}

/** policyTypes as written, else Ingress always and Egress only when the policy has egress rules. */
export function policyTypes(p: NetworkPolicy): ("Ingress" | "Egress")[] {
  if (p.spec.policyTypes?.length) return p.spec.policyTypes;
  return (p.spec.egress?.length ?? 0) > 0 ? ["Ingress", "Egress"] : ["Ingress"];
}

/** An absent or empty from/to list is any peer; otherwise entries are OR'd. */
function peersMatch(c: ModelCluster, p: NetworkPolicy, peers: PolicyPeer[] | undefined, other: ModelPod): boolean {
  if (!peers?.length) return true;
  return peers.some((peer) => peerMatches(c, p, peer, other));
}

/**
 * One peer entry. ipBlock: the pod's address in cidr and in no except. Selectors: a
 * namespaceSelector picks namespaces by their labels (absent: the policy's own
 * namespace), a podSelector picks pods in those (absent: all of them); both in one entry
 * is their AND.
 */
export function peerMatches(c: ModelCluster, p: NetworkPolicy, peer: PolicyPeer, other: ModelPod): boolean {
  if (peer.ipBlock) return ipBlockContains(peer.ipBlock, other.ip);
  if (!peer.podSelector && !peer.namespaceSelector) return false; // an empty peer entry is refused by the API
  const nsOk = peer.namespaceSelector
    ? selectorMatches(peer.namespaceSelector, namespaceLabels(c, other.namespace))
    : other.namespace === p.metadata.namespace;
  const podOk = peer.podSelector ? selectorMatches(peer.podSelector, other.labels) : true;
  return nsOk && podOk;
}

function namespaceLabels(c: ModelCluster, name: string): Labels {
  const ns = c.namespaces.find((n) => n.name === name);
  // the API server sets the immutable name label on every namespace
  return { ...(ns?.labels ?? {}), "kubernetes.io/metadata.name": name };
}

/** Label selector semantics: matchLabels and every matchExpression must hold; an empty selector matches all. */
export function selectorMatches(s: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(s.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of s.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    const ok =
      e.operator === "In" ? inValues : e.operator === "NotIn" ? !inValues : e.operator === "Exists" ? has : !has;
    if (!ok) return false;
  }
  return true;
}

/** An absent or empty ports list is any port; otherwise entries are OR'd. */
function portsMatch(ports: PolicyPort[] | undefined, conn: Connection, destination: ModelPod): boolean {
  if (!ports?.length) return true;
  return ports.some((pp) => portMatches(pp, conn, destination));
}

/**
 * One port entry: its protocol (default TCP) must be the connection's; no port is every
 * port of it; a number, with endPort the inclusive range port..endPort; a name is a
 * container port of the destination pod with that name and the entry's protocol.
 */
export function portMatches(pp: PolicyPort, conn: Connection, destination: ModelPod): boolean {
  const protocol = pp.protocol ?? "TCP";
  if (protocol !== conn.protocol) return false;
  if (pp.port === undefined) return true;
  if (typeof pp.port === "number") return conn.port >= pp.port && conn.port <= (pp.endPort ?? pp.port);
  const named = destination.ports.find((cp) => cp.name === pp.port && (cp.protocol ?? "TCP") === protocol);
  return named !== undefined && named.containerPort === conn.port;
}

/** `ip` inside `cidr` and inside none of `except` (an address both in cidr and except is excluded). */
export function ipBlockContains(b: IPBlock, ip: string): boolean {
  return cidrContains(b.cidr, ip) && !(b.except ?? []).some((e) => cidrContains(e, ip));
}

export function cidrContains(cidr: string, ip: string): boolean {
  const [base, bitsText] = cidr.split("/");
  const a = parseIp(base!);
  const b = parseIp(ip);
  if (a.bits !== b.bits) return false; // another family never matches
  const prefix = BigInt(bitsText ?? a.bits);
  const shift = BigInt(a.bits) - prefix;
  return a.value >> shift === b.value >> shift;
}

/** IPv4 or IPv6 text as a number of 32 or 128 bits. */
export function parseIp(text: string): { value: bigint; bits: 32 | 128 } {
  if (!text.includes(":")) {
    const parts = text.split(".").map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
      throw new Error(`not an IPv4 address: ${text}`);
    return { value: parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n), bits: 32 };
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  if (groups.length !== 8) throw new Error(`not an IPv6 address: ${text}`);
  return { value: groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n), bits: 128 };
}
