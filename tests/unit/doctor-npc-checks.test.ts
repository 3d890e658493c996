/**
 * doctor's npc checks over fake facts (the pattern of doctor-checks.test.ts): the x/y/z
 * policy model of tests/support/policy-fixture.ts as the API's state, each node's kernel
 * table as the compiler makes it (a healthy lab), then one fact changed per fault: a
 * controller gone, one not synced, a table edited by hand or missing, policies changed
 * while the controller was down, drops in its log; and cluster mode's weave-npc container.
 */
import { describe, expect, test } from "bun:test";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import type { ClusterFacts } from "../../net/doctor/checks-cluster.ts";
import { checkClusterNpc, checkNpc, checkNpcDrift, checkNpcDrops } from "../../net/doctor/checks-npc.ts";
import { evaluate, summarize } from "../../net/doctor/evaluate.ts";
import { groupDrops, parseBlockedMetrics, parseDropLines } from "../../net/doctor/parse-npc.ts";
import type { Facts, NodeFacts } from "../../net/doctor/types.ts";
import { compile } from "../../net/policy/compile.ts";
import type { NftTable } from "../../net/policy/nft-model.ts";
import { policyView } from "../../net/policy/state.ts";
import { modelNamespaces, modelPods, NODES, netpol } from "../support/policy-fixture.ts";

const NOW = Date.parse("2026-11-23T12:00:00Z");
const at = (minutesAgo: number) => new Date(NOW - minutesAgo * 60_000).toISOString();

/** The API's state as objects: the model's pods, namespaces, and a deny plus an allow in y. */
function apiState(extra: ReturnType<typeof netpol>[] = []) {
  const pods: V1Pod[] = modelPods().map((p) => ({
    metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
    spec: {
      nodeName: p.node,
      containers: [
        { name: "c", ports: p.ports.map((x) => ({ name: x.name, containerPort: x.port, protocol: x.protocol })) },
      ],
    },
    status: { phase: "Running", podIP: p.ips[0] },
  }));
  const namespaces = [...modelNamespaces().values()].map((n) => ({ metadata: { name: n.name, labels: n.labels } }));
  const policies = [
    netpol("y", "deny", { podSelector: {} }),
    netpol("y", "from-x", {
      podSelector: {},
      ingress: [{ _from: [{ namespaceSelector: { matchLabels: { ns: "x" } } }] }],
    }),
    ...extra,
  ];
  return policyView({ pods, namespaces, policies });
}

const DROP = (min: number, from: string, to: string) =>
  `${at(min)} weave-npc: blocked TCP 10.32.2.10:4${min}123 (${from}) -> 10.32.1.11:80 (${to}): ingress of ${to} is isolated by y/deny, y/from-x and no rule of them allows this peer and port`;

function facts(o: { npc?: (node: string) => Partial<NodeFacts["npc"]>; policy?: Facts["policy"] } = {}): Facts {
  const view = apiState();
  const nodes: NodeFacts[] = NODES.map((name, i) => ({
    name,
    agent: { running: true, ready: true },
    npc: {
      running: true,
      pid: 200 + i,
      synced: true,
      statusText: "synced",
      table: compile({ state: view.state, node: name }),
      log: { path: `${name}/npc.log`, lines: [`${at(1)} weave-npc: synced: 2 policies, 3 pods on ${name}`] },
      ...o.npc?.(name),
    },
  }));
  return {
    mode: "lab",
    target: "lab",
    nodes,
    pods: [],
    probes: [],
    policy: o.policy ?? { source: "lab", view },
    now: NOW,
    hints: {
      startAgent: (n) => `weave lab agent start ${n}`,
      agentLogs: (n) => `${n}/agent.log`,
      onNode: (n) => `ip netns exec ${n} `,
      startNpc: (n) => `weave lab npc start ${n} --name lab`,
      npcLogs: (n) => `${n}/npc.log`,
    },
  };
}

const failed = (rs: { name: string; status: string; node?: string }[]) =>
  rs.filter((r) => r.status === "fail").map((r) => `${r.name}@${r.node ?? "-"}`);

describe("npc", () => {
  test("healthy: every node's controller synced, no drift, no drops", () => {
    const rs = [...checkNpc(facts()), ...checkNpcDrift(facts()), ...checkNpcDrops(facts())];
    expect(rs.map((r) => `${r.name}@${r.node}:${r.status}`)).toEqual(
      ["npc", "npc-drift", "npc-drops"].flatMap((c) => NODES.map((n) => `${c}@${n}:pass`)),
    );
    expect(rs[0]!.evidence).toBe("weave npc (pid 200) running and synced");
    expect(checkNpcDrift(facts())[0]!.evidence).toContain("is what 2 policies compile to for this node");
  });
  test("a controller gone: fail on its node with how to start it and its log", () => {
    const rs = checkNpc(facts({ npc: (n) => (n === "n2" ? { running: false } : {}) }));
    expect(failed(rs)).toEqual(["npc@n2"]);
    const r = rs.find((x) => x.node === "n2")!;
    expect(r.evidence).toContain("weave npc is not running: pid 201 is gone; the kernel keeps its last rules");
    expect(r.fix).toBe("weave lab npc start n2 --name lab; why it stopped: n2/npc.log");
  });
  test("not synced, or not answering", () => {
    const rs = checkNpc(
      facts({
        npc: (n) =>
          n === "n1"
            ? { synced: false, statusText: "waiting for the API: connection refused" }
            : n === "n3"
              ? { error: "connection refused" }
              : {},
      }),
    );
    expect(failed(rs)).toEqual(["npc@n1", "npc@n3"]);
    expect(rs[0]!.evidence).toContain("has not synced: waiting for the API: connection refused");
    expect(rs[2]!.evidence).toContain("does not answer on :6781/status: connection refused");
  });
});

describe("npc-drift", () => {
  const edited = (t: NftTable): NftTable => {
    const copy: NftTable = { ...t, sets: new Map(t.sets), chains: new Map(t.chains) };
    const map = copy.sets.get("ingress-v4")!;
    copy.sets.set("ingress-v4", { ...map, elements: new Map() });
    return copy;
  };
  test("an element deleted by hand: fail naming the command that would put it back", () => {
    const f = facts({
      npc: (n) => (n === "n2" ? { table: edited(compile({ state: apiState().state, node: n })) } : {}),
    });
    const rs = checkNpcDrift(f);
    expect(failed(rs)).toEqual(["npc-drift@n2"]);
    const r = rs.find((x) => x.node === "n2")!;
    expect(r.evidence).toContain("differs from what 2 policies compile to");
    expect(r.evidence).toContain("add element inet weave-npc ingress-v4");
    expect(r.fix).toContain("restart weave npc");
    expect(r.fix).toContain("ip netns exec n2 nft -a list table inet weave-npc");
  });
  test("a policy changed while the controller was down: every node's table is stale", () => {
    const newer = apiState([netpol("x", "deny", { podSelector: {} })]);
    const rs = checkNpcDrift(facts({ policy: { source: "lab", view: newer } }));
    expect(failed(rs).sort()).toEqual(NODES.map((n) => `npc-drift@${n}`));
  });
  test("no table at all; a table that could not be read; policies that could not be read", () => {
    const missing = checkNpcDrift(facts({ npc: (n) => (n === "n3" ? { table: null } : {}) }));
    expect(failed(missing)).toEqual(["npc-drift@n3"]);
    expect(missing[2]!.evidence).toContain("has no table inet weave-npc, so no policy is enforced here");
    const unread = checkNpcDrift(
      facts({ npc: (n) => (n === "n1" ? { table: undefined, tableError: "Operation not permitted" } : {}) }),
    );
    expect(unread[0]).toMatchObject({ status: "warn", node: "n1" });
    const noApi = checkNpcDrift(facts({ policy: { source: "https://x", error: "connection refused" } }));
    expect(noApi).toEqual([
      expect.objectContaining({ status: "warn", evidence: expect.stringContaining("not compared") }),
    ]);
  });
});

describe("npc-drops", () => {
  const lines = [DROP(2, "z/a", "y/b"), DROP(3, "z/a", "y/b"), DROP(4, "z/c", "y/b"), DROP(30, "z/b", "y/b")];
  test("recent drops grouped, most frequent first, as a warning with explain's command", () => {
    const rs = checkNpcDrops(facts({ npc: (n) => (n === "n2" ? { log: { path: "x", lines } } : {}) }));
    const r = rs.find((x) => x.node === "n2")!;
    expect(r.status).toBe("warn");
    expect(r.evidence).toStartWith(
      "3 connections dropped in the last 10 minutes: z/a -> y/b 80/TCP x2 (ingress of y/b is isolated by y/deny, y/from-x",
    );
    expect(r.evidence).toContain("; z/c -> y/b 80/TCP (");
    expect(r.evidence).not.toContain("z/b");
    expect(r.fix).toContain("weave policy explain --from z/a --to y/b --port 80/TCP");
    expect(summarize(rs).exitCode).toBe(0);
  });
  test("the parser: ports, addresses without pods, the rate limit's summary", () => {
    const outside = `${at(1)} weave-npc: blocked UDP 198.18.0.254:5353 -> 10.32.1.11:53 (y/b): ingress of y/b is isolated by y/deny`;
    const held = `${at(1)} weave-npc: blocked: 7 more connection(s) in the last second (log rate limit)`;
    const { drops, heldBack } = parseDropLines([outside, held], NOW - 600_000);
    expect(drops).toEqual([expect.objectContaining({ protocol: "UDP", from: "198.18.0.254", to: "y/b", dport: 53 })]);
    expect(heldBack).toBe(7);
    expect(groupDrops(drops)[0]).toMatchObject({ port: "53/UDP", count: 1 });
  });
  test("node mode: the counters of /metrics, without pods", () => {
    const text =
      'weavenpc_blocked_connections_total{dport="80",protocol="TCP"} 5\nweavenpc_blocked_connections_total{protocol="UDP",dport="53"} 2\n';
    const blocked = parseBlockedMetrics(text);
    expect(blocked).toEqual({ "TCP 80": 5, "UDP 53": 2 });
    const rs = checkNpcDrops(facts({ npc: () => ({ log: undefined, blocked }) }));
    expect(rs[0]!.evidence).toBe("7 connections dropped since weave npc started, by port: 80/TCP x5 and 53/UDP x2");
  });
  test("the checks are in doctor's list", () => {
    const names = new Set(evaluate(facts()).map((r) => r.name));
    for (const c of ["npc", "npc-drift", "npc-drops"]) expect(names).toContain(c);
  });
});

describe("cluster mode: the weave-npc container", () => {
  const node = (name: string): V1Node => ({ metadata: { name } });
  const agent = (nodeName: string, npc?: { ready: boolean }): V1Pod => ({
    metadata: { name: `weave-net-${nodeName}`, namespace: "kube-system" },
    spec: { nodeName, containers: [{ name: "weave" }, ...(npc ? [{ name: "weave-npc" }] : [])] },
    status: {
      containerStatuses: [
        { name: "weave", ready: true, restartCount: 0, image: "", imageID: "" },
        ...(npc
          ? [
              {
                name: "weave-npc",
                ready: npc.ready,
                restartCount: 0,
                image: "",
                imageID: "",
                state: npc.ready ? { running: {} } : { waiting: { reason: "CrashLoopBackOff" } },
              },
            ]
          : []),
      ],
    },
  });
  const cluster = (pods: V1Pod[], npcLogs: ClusterFacts["npcLogs"] = {}): ClusterFacts => ({
    server: "https://x",
    nodes: ["n1", "n2", "n3"].map(node),
    agentPods: pods,
    pods: [],
    now: NOW,
    npcLogs,
  });
  test("ready passes, a crashing one fails with its log command, an install without it warns; drops from its log", () => {
    const f = cluster([agent("n1", { ready: true }), agent("n2", { ready: false }), agent("n3")], {
      n1: { lines: [DROP(1, "z/a", "y/b")] },
    });
    const rs = checkClusterNpc(f);
    expect(rs.map((r) => `${r.name}@${r.node}:${r.status}`)).toEqual([
      "npc@n1:pass",
      "npc-drops@n1:warn",
      "npc@n2:fail",
      "npc@n3:warn",
    ]);
    expect(rs[2]!.evidence).toContain("is CrashLoopBackOff");
    expect(rs[2]!.fix).toContain("kubectl -n kube-system logs -c weave-npc weave-net-n2");
  });
});
