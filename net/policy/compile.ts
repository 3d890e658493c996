/**
 * The compiler: policies + pods + namespaces + this node's name -> the desired table
 * `inet weave-npc` for the pods of this node (pure).
 *
 *   chain forward (hook forward, priority 0: after a Service's DNAT in prerouting; bridged
 *   pod traffic crosses it through br_netfilter)
 *     ct state established,related accept          replies of allowed connections
 *     ip saddr vmap @egress-v4                      a local pod isolated for egress ->
 *                                                   jump egress/<ns>/<pod> (return = allowed)
 *     ip saddr vmap @pending-egress-v4              a local pod not synced yet
 *     ip daddr vmap @ingress-v4                     -> jump ingress/<ns>/<pod> (accept)
 *     ip daddr vmap @pending-ingress-v4
 *     (the same with ip6 for the -v6 maps)
 *   chain ingress/<ns>/<pod>: one rule per allowing (policy rule x peer), matching the
 *     source by a set of pod addresses (peer/<digest>-v4, shared by every rule naming the
 *     same peer) or an ipBlock inline, and the ports resolved on this pod; then
 *     `ct state new log group 86` and `counter drop`, both attributable to the pod.
 *   chain egress/<ns>/<pod>: the same with daddr and `return`; named ports resolve on
 *     each destination pod, so they match (daddr . proto . port) in a set per rule.
 *   chain ingress-pending/<ns>, egress-pending/<ns>: for every namespace; log + drop when
 *     a policy of that namespace isolates that direction, empty (open) otherwise.
 *
 * A packet costs a hash lookup per map, whatever the number of pods; the rules it walks
 * are only those of the policies selecting its own pod. A node's traffic to and from its
 * own pods never reaches forward (it is input/output), so it is never policed.
 *
 * New pods: the CNI ADD path (net/host/npc-admission.ts), before it answers, adds the new
 * address to pending-<dir>-v4 with `jump <dir>-pending/<ns>`, so a pod of a namespace
 * with policies starts closed and one of a namespace without any starts open. Once the
 * controller knows the pod, its compiled entries replace the pending ones (`pending`
 * below: the kernel's pending elements are kept only for addresses of pods not known yet).
 */
import { canonicalIp, formatRange, ipFamily } from "../cidr.ts";
import { mergeSpans, peerMatches, peerSelectsPod, type PortSpan, policySelects, resolvePorts } from "./match.ts";
import type { ClusterState, Peer, Pod, Policy, Rule, SelectorPeer } from "./model.ts";
import { policyId } from "./model.ts";
import {
  addressMatch,
  addressType,
  type Direction,
  digest,
  dispatchMap,
  type Family,
  LOG_GROUP,
  logPrefix,
  pendingChain,
  pendingMap,
  podChain,
  TABLE,
} from "./names.ts";
import { emptyTable, type NftChain, type NftRule, type NftSet, type NftTable } from "./nft-model.ts";
import { selectorKey } from "./selector.ts";

const FAMILIES: Family[] = [4, 6];
const DIRECTIONS: Direction[] = ["ingress", "egress"];

export type CompileInput = {
  state: ClusterState;
  node: string;
  /** The kernel's table as it is: its pending maps' elements are carried over (see the file note). */
  kernel?: NftTable;
};

export function compile(input: CompileInput): NftTable {
  const { state, node } = input;
  const c = new Compilation(state);
  const local = state.pods.filter((p) => p.node === node && !p.hostNetwork && p.ips.length);
  c.base();
  for (const ns of namespacesOf(state, local)) c.pendingChains(ns);
  for (const pod of local) for (const dir of DIRECTIONS) c.podChain(pod, dir);
  c.carryPending(input.kernel, new Set(state.pods.flatMap((p) => p.ips.map(canonicalIp))));
  return c.table;
}

function namespacesOf(state: ClusterState, local: Pod[]): string[] {
  const names = new Set([...state.namespaces.keys(), ...state.policies.map((p) => p.namespace)]);
  for (const p of local) names.add(p.namespace);
  return [...names].sort();
}

const rule = (text: string, hint: string): NftRule => ({ text, comment: `${hint.slice(0, 100)} ${digest(text, 8)}` });

class Compilation {
  readonly table = emptyTable(TABLE);
  private readonly members: Pod[];

  constructor(private readonly state: ClusterState) {
    this.members = state.pods.filter((p) => !p.hostNetwork && p.ips.length);
  }

  private addChain(c: NftChain): void {
    this.table.chains.set(c.name, c);
  }

  private set(name: string, type: string, value?: "verdict"): NftSet {
    const have = this.table.sets.get(name);
    if (have) return have;
    const s: NftSet = { name, type, ...(value ? { value } : {}), elements: new Map() };
    this.table.sets.set(name, s);
    return s;
  }

  base(): void {
    const rules = [rule("ct state established,related accept", "replies")];
    // egress first: an allowed egress returns, then the destination's ingress decides
    for (const dir of ["egress", "ingress"] as const) {
      const field = dir === "ingress" ? "daddr" : "saddr";
      for (const map of [dispatchMap, pendingMap])
        for (const f of FAMILIES) {
          const name = map(dir, f);
          this.set(name, addressType(f), "verdict");
          rules.push(rule(`${addressMatch(f)} ${field} vmap @${name}`, name));
        }
    }
    this.addChain({ name: "forward", base: { type: "filter", hook: "forward", priority: 0, policy: "accept" }, rules });
  }

  pendingChains(ns: string): void {
    for (const dir of DIRECTIONS) {
      const guarded = this.state.policies.some((p) => p.namespace === ns && p[dir] !== undefined);
      const rules = guarded ? dropRules(dir, `${ns}/-`) : [];
      this.addChain({ name: pendingChain(dir, ns), rules });
    }
  }

  podChain(pod: Pod, dir: Direction): void {
    const policies = this.state.policies
      .filter((p) => p[dir] !== undefined && policySelects(p, pod))
      .sort((a, b) => (policyId(a) < policyId(b) ? -1 : 1));
    if (!policies.length) return;
    const name = podChain(dir, pod.namespace, pod.name);
    const rules: NftRule[] = [];
    for (const p of policies)
      p[dir]!.forEach((r, i) => {
        const hint = `${policyId(p)} ${dir}[${i}]`;
        const texts = dir === "ingress" ? this.ingressRule(r, pod) : this.egressRule(p, i, r);
        for (const text of texts) rules.push(rule(text, hint));
      });
    const unique = [...new Map(rules.map((r) => [r.comment, r])).values()];
    this.addChain({ name, rules: [...unique, ...dropRules(dir, `${pod.namespace}/${pod.name}`)] });
    for (const ip of pod.ips) {
      const f = ipFamily(ip);
      if (f) this.table.sets.get(dispatchMap(dir, f))!.elements.set(canonicalIp(ip), `jump ${name}`);
    }
  }

  /** Rule texts of one ingress rule on `pod`: each peer, with the ports resolved on this pod. */
  private ingressRule(r: Rule, pod: Pod): string[] {
    const spans = r.ports ? mergeSpans(resolvePorts(r.ports, pod)) : undefined;
    if (spans && !spans.length) return [];
    const ports = spans ? ` ${portMatch(spans)}` : "";
    return this.peerTerms(r.peers, "saddr").map((m) => `${m}${ports} accept`.trim());
  }

  /** Rule texts of one egress rule: numbered ports inline, named ports per destination pod in a set. */
  private egressRule(p: Policy, index: number, r: Rule): string[] {
    const peers = this.peerTerms(r.peers, "daddr");
    if (!r.ports) return peers.map((m) => `${m} return`.trim());
    const numbered = r.ports.filter((x) => typeof x.port !== "string");
    const named = r.ports.filter((x) => typeof x.port === "string");
    const out: string[] = [];
    if (numbered.length) {
      const ports = portMatch(mergeSpans(resolvePorts(numbered, undefined)));
      out.push(...peers.map((m) => `${m} ${ports} return`.trim()));
    }
    if (named.length) {
      const entries = this.members.filter(
        (q) => !r.peers || r.peers.some((peer) => peerMatches(peer, { pod: q, ip: q.ips[0]! }, this.state.namespaces)),
      );
      const base = `egress-ports/${digest(`${policyId(p)}/${index}`)}`;
      for (const f of this.familiesOf(entries)) {
        const s = this.set(`${base}-v${f}`, `${addressType(f)} . inet_proto . inet_service`);
        for (const q of entries)
          for (const span of resolvePorts(named, q))
            for (const ip of q.ips.filter((x) => ipFamily(x) === f))
              s.elements.set(`${canonicalIp(ip)} . ${span.protocol.toLowerCase()} . ${span.first}`, "");
        out.push(`${addressMatch(f)} daddr . meta l4proto . th dport @${s.name} return`);
      }
    }
    return out;
  }

  /** One match per peer (and family); [""] when the rule names no peers (any address). */
  private peerTerms(peers: Peer[] | undefined, field: "saddr" | "daddr"): string[] {
    if (!peers) return [""];
    return peers.flatMap((peer) => {
      if (peer.kind === "ipBlock") {
        const kw = addressMatch(peer.cidr.family);
        const except = peer.except.length ? ` ${kw} ${field} != { ${peer.except.map(formatRange).join(", ")} }` : "";
        return [`${kw} ${field} ${formatRange(peer.cidr)}${except}`];
      }
      return this.peerSets(peer).map((s) => `${addressMatch(s.family)} ${field} @${s.name}`);
    });
  }

  /** The address sets of a selector peer: IPv4 always (so a new pod only adds an element), IPv6 when it has any. */
  private peerSets(peer: SelectorPeer): { name: string; family: Family }[] {
    const scope = peer.namespaceSelector ? `ns ${selectorKey(peer.namespaceSelector)}` : `in ${peer.policyNamespace}`;
    const pods = peer.podSelector ? `pods ${selectorKey(peer.podSelector)}` : "all pods";
    const base = `peer/${digest(`${scope} ${pods}`)}`;
    const selected = this.members.filter((q) => peerSelectsPod(peer, q, this.state.namespaces));
    return this.familiesOf(selected).map((f) => {
      const s = this.set(`${base}-v${f}`, addressType(f));
      for (const q of selected) for (const ip of q.ips) if (ipFamily(ip) === f) s.elements.set(canonicalIp(ip), "");
      return { name: s.name, family: f };
    });
  }

  private familiesOf(pods: Pod[]): Family[] {
    const v6 = pods.some((q) => q.ips.some((ip) => ipFamily(ip) === 6));
    return v6 ? FAMILIES : [4];
  }

  /** The kernel's pending elements for addresses no known pod holds, whose chain still exists. */
  carryPending(kernel: NftTable | undefined, known: Set<string>): void {
    for (const dir of DIRECTIONS)
      for (const f of FAMILIES) {
        const name = pendingMap(dir, f);
        const want = this.table.sets.get(name)!;
        for (const [ip, value] of kernel?.sets.get(name)?.elements ?? []) {
          const target = value.replace(/^jump /, "");
          if (!known.has(ip) && this.table.chains.has(target)) want.elements.set(ip, value);
        }
      }
  }
}

/** `meta l4proto . th dport { tcp . 80, udp . 53-54 }`: every span of every protocol in one lookup. */
function portMatch(spans: PortSpan[]): string {
  const items = spans.map((s) => {
    const ports = s.first === s.last ? `${s.first}` : `${s.first}-${s.last}`;
    return `${s.protocol.toLowerCase()} . ${ports}`;
  });
  return `meta l4proto . th dport { ${items.join(", ")} }`;
}

/** The end of a chain that denies: log a new connection for the controller, count, drop. */
function dropRules(dir: Direction, who: string): NftRule[] {
  const log = `ct state new log group ${LOG_GROUP} prefix "${logPrefix(dir, who)}"`;
  return [rule(log, "log"), rule("counter drop", "drop")];
}
