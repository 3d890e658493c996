/**
 * The diff (net/policy/nft-diff.ts) and the kernel listing's reader (nft-json.ts): a
 * change produces only what changed, a no-op nothing, and the script keeps references
 * valid in its order; the kernel's JSON reads back to what was written.
 */
import { describe, expect, test } from "bun:test";
import { compile } from "../../net/policy/compile.ts";
import { policyFromApi } from "../../net/policy/model.ts";
import { diffTables } from "../../net/policy/nft-diff.ts";
import { tableFromJson } from "../../net/policy/nft-json.ts";
import type { NftTable } from "../../net/policy/nft-model.ts";
import { cluster, netpol, pod } from "../support/policy-fixture.ts";

/** What the kernel would list after applying `t`: rule texts are not read back, only comments. */
function asKernel(t: NftTable): NftTable {
  const chains = new Map(
    [...t.chains].map(([n, c]) => [n, { ...c, rules: c.rules.map((r) => ({ text: "", comment: r.comment })) }]),
  );
  const sets = new Map([...t.sets].map(([n, s]) => [n, { ...s, elements: new Map(s.elements) }]));
  return { ...t, chains, sets };
}

const deny = netpol("x", "deny", { podSelector: {} });
const fromY = netpol("x", "from-y", {
  podSelector: { matchLabels: { pod: "a" } },
  ingress: [
    { _from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { pod: "b" } } }] },
  ],
});

describe("diff", () => {
  test("from nothing: the table, sets and chains before rules, elements last", () => {
    const tx = diffTables(undefined, compile({ state: cluster(deny), node: "n1" }));
    const kinds = tx.commands.map((c) => c.split(" ").slice(0, 2).join(" "));
    expect(kinds[0]).toBe("add table");
    expect(kinds.lastIndexOf("add map")).toBeLessThan(kinds.indexOf("add chain"));
    expect(kinds.lastIndexOf("add chain")).toBeLessThan(kinds.indexOf("add rule"));
    expect(kinds.lastIndexOf("add rule")).toBeLessThan(kinds.indexOf("add element"));
    expect(tx.commands).toContain(
      "add chain inet weave-npc forward { type filter hook forward priority 0; policy accept; }",
    );
  });
  test("a no-op produces nothing", () => {
    const t = compile({ state: cluster(deny, fromY), node: "n1" });
    expect(diffTables(asKernel(t), compile({ state: cluster(deny, fromY), node: "n1" })).commands).toEqual([]);
  });
  test("a new peer pod is one element, nothing else", () => {
    const s = cluster(deny, fromY);
    const node = pod(s, "x/a").node!;
    const before = asKernel(compile({ state: s, node }));
    s.pods.push({ ...pod(s, "y/b"), name: "b2", ips: ["10.32.1.99"] });
    const tx = diffTables(before, compile({ state: s, node }));
    expect(tx.commands.length).toBe(1);
    expect(tx.commands[0]).toMatch(/^add element inet weave-npc peer\/[0-9a-f]{10}-v4 \{ 10\.32\.1\.99 \}$/);
  });
  test("a changed policy rewrites only the chains of the pods it selects", () => {
    const s = cluster(deny, fromY);
    const node = pod(s, "x/a").node!;
    const before = asKernel(compile({ state: s, node }));
    s.policies[1] = policyFromApi(
      netpol("x", "from-y", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ ports: [{ port: 81 as never }] }],
      }),
    );
    const tx = diffTables(before, compile({ state: s, node }));
    const flushed = tx.commands.filter((c) => c.startsWith("flush chain"));
    expect(flushed).toEqual(["flush chain inet weave-npc ingress/x/a"]);
    // the peer set no rule names any more goes, after the chain that named it was rewritten
    const deleted = tx.commands.findIndex((c) => c.startsWith("delete set"));
    expect(deleted).toBeGreaterThan(tx.commands.indexOf(flushed[0]!));
  });
  test("a deleted policy: map elements go before their chains, chains are emptied before they go", () => {
    const s = cluster(deny);
    const node = "n1";
    const before = asKernel(compile({ state: s, node }));
    s.policies = [];
    const tx = diffTables(before, compile({ state: s, node }));
    const firstElementDelete = tx.commands.findIndex((c) => c.startsWith("delete element inet weave-npc ingress-v4"));
    const firstChainDelete = tx.commands.findIndex((c) => c.startsWith("delete chain"));
    const flushes = tx.commands.filter((c) => c.startsWith("flush chain")).map((c) => c.split(" ").pop());
    expect(firstElementDelete).toBeGreaterThanOrEqual(0);
    expect(firstElementDelete).toBeLessThan(firstChainDelete);
    expect(flushes).toContain("ingress-pending/x");
    expect(tx.commands.filter((c) => c.startsWith("delete chain")).length).toBeGreaterThan(0);
    expect(tx.commands.some((c) => c.includes("forward"))).toBe(false);
  });
  test("a set of ours with another type: the whole table again, in the same transaction", () => {
    const want = compile({ state: cluster(deny), node: "n1" });
    const have = asKernel(want);
    have.sets.get("ingress-v4")!.type = "ipv6_addr";
    const tx = diffTables(have, want);
    expect(tx.commands.slice(0, 3)).toEqual([
      "add table inet weave-npc",
      "delete table inet weave-npc",
      "add table inet weave-npc",
    ]);
  });
});

describe("the kernel's listing", () => {
  const listing = JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6" } },
      { table: { family: "inet", name: "weave-npc", handle: 2 } },
      {
        map: {
          family: "inet",
          name: "ingress-v4",
          table: "weave-npc",
          type: "ipv4_addr",
          map: "verdict",
          elem: [["10.32.0.5", { jump: { target: "ingress/x/a" } }]],
        },
      },
      {
        set: {
          family: "inet",
          name: "np-v4",
          table: "weave-npc",
          type: ["ipv4_addr", "inet_proto", "inet_service"],
          elem: [{ concat: ["10.32.0.6", "tcp", 8080] }],
        },
      },
      {
        set: {
          family: "inet",
          name: "peer-v4",
          table: "weave-npc",
          type: "ipv4_addr",
          elem: ["10.32.0.7", { elem: { val: "10.32.0.8", timeout: 10 } }],
        },
      },
      {
        chain: {
          family: "inet",
          table: "weave-npc",
          name: "forward",
          type: "filter",
          hook: "forward",
          prio: 0,
          policy: "accept",
        },
      },
      { chain: { family: "inet", table: "weave-npc", name: "ingress/x/a" } },
      { rule: { family: "inet", table: "weave-npc", chain: "ingress/x/a", comment: "log 1234abcd", expr: [] } },
      { rule: { family: "inet", table: "weave-npc", chain: "ingress/x/a", expr: [] } },
    ],
  });
  test("reads sets, maps, chains and rule comments in the compiler's canonical text", () => {
    const t = tableFromJson(listing, "weave-npc");
    expect([...t.sets.get("ingress-v4")!.elements]).toEqual([["10.32.0.5", "jump ingress/x/a"]]);
    expect(t.sets.get("np-v4")!.type).toBe("ipv4_addr . inet_proto . inet_service");
    expect([...t.sets.get("np-v4")!.elements.keys()]).toEqual(["10.32.0.6 . tcp . 8080"]);
    expect([...t.sets.get("peer-v4")!.elements.keys()]).toEqual(["10.32.0.7", "10.32.0.8"]);
    expect(t.chains.get("forward")!.base).toEqual({ type: "filter", hook: "forward", priority: 0, policy: "accept" });
    expect(t.chains.get("ingress/x/a")!.rules.map((r) => r.comment)).toEqual(["log 1234abcd", ""]);
  });
});
