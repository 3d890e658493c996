/**
 * The compiler (net/policy/compile.ts) against the reference evaluator: for every case
 * of the checklist, every ordered pair of the model's endpoints (9 pods and an address
 * outside) on every probe port, the compiled tables of the nodes on the path (the
 * client's node, then the server's) let a first packet through exactly when the
 * evaluator allows it. Then the table's shape, case by case.
 */
import { describe, expect, test } from "bun:test";
import { compile } from "../../net/policy/compile.ts";
import { type Endpoint, verdict } from "../../net/policy/evaluate.ts";
import type { ClusterState, Protocol } from "../../net/policy/model.ts";
import type { NftTable } from "../../net/policy/nft-model.ts";
import { walk } from "../support/nft-sim.ts";
import { CASES } from "../support/policy-cases.ts";
import { cluster, NODES, netpol, OUTSIDE, pod } from "../support/policy-fixture.ts";

const PROBES: [number, Protocol][] = [
  [80, "TCP"],
  [81, "TCP"],
  [80, "UDP"],
  [81, "UDP"],
  [80, "SCTP"],
];

function endpoints(s: ClusterState): { id: string; ep: Endpoint; ip: string; node?: string }[] {
  const pods = s.pods.map((p) => ({ id: `${p.namespace}/${p.name}`, ep: { pod: p }, ip: p.ips[0]!, node: p.node }));
  return [...pods, { id: OUTSIDE, ep: { ip: OUTSIDE }, ip: OUTSIDE }];
}

/** Whether the compiled tables let the first packet of this connection through. */
function compiledAllows(
  tables: Map<string, NftTable>,
  from: { ip: string; node?: string },
  to: typeof from,
  port: number,
  protocol: Protocol,
): boolean {
  const packet = { saddr: from.ip, daddr: to.ip, dport: port, protocol: protocol.toLowerCase() as "tcp" };
  const path = [...new Set([from.node, to.node].filter((n): n is string => n !== undefined))];
  return path.every((n) => walk(tables.get(n)!, packet).verdict === "accept");
}

describe("compiled tables agree with the evaluator", () => {
  for (const c of CASES)
    test(c.name, () => {
      const s = cluster(...c.policies);
      const tables = new Map(NODES.map((node) => [node, compile({ state: s, node })]));
      const wrong: string[] = [];
      for (const a of endpoints(s))
        for (const b of endpoints(s)) {
          if (a.id === b.id) continue;
          for (const [port, protocol] of PROBES) {
            const want = verdict(s, a.ep, b.ep, port, protocol).allowed;
            const got = compiledAllows(tables, a, b, port, protocol);
            if (want !== got) wrong.push(`${a.id} -> ${b.id} ${port}/${protocol}: evaluator ${want}, compiled ${got}`);
          }
        }
      expect(wrong).toEqual([]);
    });
});

describe("the table's shape", () => {
  const deny = netpol("x", "deny", { podSelector: {} });
  test("one table inet weave-npc; forward: replies first, egress before ingress, maps keyed by address", () => {
    const t = compile({ state: cluster(deny), node: "n1" });
    expect(t.family).toBe("inet");
    expect(t.name).toBe("weave-npc");
    expect(t.chains.get("forward")!.base).toEqual({ type: "filter", hook: "forward", priority: 0, policy: "accept" });
    expect(t.chains.get("forward")!.rules.map((r) => r.text)).toEqual([
      "ct state established,related accept",
      "ip saddr vmap @egress-v4",
      "ip6 saddr vmap @egress-v6",
      "ip saddr vmap @pending-egress-v4",
      "ip6 saddr vmap @pending-egress-v6",
      "ip daddr vmap @ingress-v4",
      "ip6 daddr vmap @ingress-v6",
      "ip daddr vmap @pending-ingress-v4",
      "ip6 daddr vmap @pending-ingress-v6",
    ]);
  });
  test("only the node's own pods get chains; each ends in an attributable log and a counted drop", () => {
    const s = cluster(deny);
    const t = compile({ state: s, node: "n1" });
    const local = s.pods.filter((p) => p.node === "n1" && p.namespace === "x").map((p) => `ingress/x/${p.name}`);
    const podChains = [...t.chains.keys()].filter((n) => /^(ingress|egress)\//.test(n));
    expect(podChains).toEqual(local);
    const xa = t.chains.get(local[0]!)!;
    expect(xa.rules.map((r) => r.text)).toEqual([
      `ct state new log group 86 prefix "weave-npc ingress ${local[0]!.slice(8)}"`,
      "counter drop",
    ]);
    const ip = s.pods.find((p) => `ingress/x/${p.name}` === local[0])!.ips[0]!;
    expect(t.sets.get("ingress-v4")!.elements.get(ip)).toBe(`jump ${local[0]}`);
  });
  test("pending chains: closed in a namespace with policies for that direction, open elsewhere", () => {
    const t = compile({ state: cluster(deny), node: "n2" });
    expect(t.chains.get("ingress-pending/x")!.rules.map((r) => r.text)).toEqual([
      'ct state new log group 86 prefix "weave-npc ingress x/-"',
      "counter drop",
    ]);
    expect(t.chains.get("egress-pending/x")!.rules).toEqual([]);
    expect(t.chains.get("ingress-pending/y")!.rules).toEqual([]);
  });
  test("the kernel's pending elements stay for unknown addresses, go for known pods and gone namespaces", () => {
    const s = cluster(deny);
    const first = compile({ state: s, node: "n1" });
    const pending = first.sets.get("pending-ingress-v4")!;
    pending.elements.set("10.32.9.9", "jump ingress-pending/x");
    pending.elements.set(pod(s, "y/a").ips[0]!, "jump ingress-pending/y");
    pending.elements.set("10.32.9.10", "jump ingress-pending/gone");
    const next = compile({ state: s, node: "n1", kernel: first });
    expect([...next.sets.get("pending-ingress-v4")!.elements]).toEqual([["10.32.9.9", "jump ingress-pending/x"]]);
  });
  test("a peer's set is shared by the rules naming it and holds every matching pod of the cluster", () => {
    const from = { _from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] };
    const s = cluster(
      netpol("x", "p1", { podSelector: {}, ingress: [from] }),
      netpol("z", "p2", { podSelector: {}, ingress: [from] }),
    );
    const t = compile({ state: s, node: "n1" });
    const peerSets = [...t.sets.values()].filter((x) => x.name.startsWith("peer/"));
    expect(peerSets.length).toBe(1);
    expect([...peerSets[0]!.elements.keys()].sort()).toEqual(
      s.pods.filter((p) => p.namespace === "y").map((p) => p.ips[0]!),
    );
  });
  test("ports of one rule in one lookup, merged; ipBlock except inline", () => {
    const s = cluster(
      netpol("x", "p", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [
          {
            _from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }],
            ports: [{ port: 80 as never, endPort: 90 }, { port: 85 as never }, { protocol: "UDP" }],
          },
        ],
      }),
    );
    const node = pod(s, "x/a").node!;
    const chain = compile({ state: s, node }).chains.get("ingress/x/a")!;
    expect(chain.rules[0]!.text).toBe(
      "ip saddr 10.0.0.0/8 ip saddr != { 10.1.0.0/16 } meta l4proto . th dport { tcp . 80-90, udp . 0-65535 } accept",
    );
    expect(chain.rules[0]!.comment).toMatch(/^x\/p ingress\[0\] [0-9a-f]{8}$/);
  });
  test("IPv6 pods: the same chains through the -v6 maps and sets", () => {
    const s = cluster(
      netpol("x", "from-y", {
        podSelector: {},
        ingress: [{ _from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
      }),
    );
    const ya = pod(s, "y/a");
    const xa = pod(s, "x/a");
    ya.ips = ["fd00::a"];
    xa.ips = ["fd00::b"];
    const t = compile({ state: s, node: xa.node! });
    expect(t.sets.get("ingress-v6")!.elements.get("fd00::b")).toBe("jump ingress/x/a");
    const packet = { saddr: "fd00::a", daddr: "fd00::b", dport: 80, protocol: "tcp" as const };
    expect(walk(t, packet).verdict).toBe("accept");
    expect(walk(t, { ...packet, saddr: "fd00::c" }).verdict).toBe("drop");
  });
});
