/**
 * doctor's checks over fake facts: a healthy 3-node lab passes everything, and each
 * fault, made by changing one fact, fails the right check on the right node with a fix.
 * The same facts in node mode (this node plus peers known from its report) too.
 */
import { describe, expect, test } from "bun:test";
import { evaluate, summarize, CATALOG } from "../../net/doctor/evaluate.ts";
import { blame } from "../../net/doctor/result.ts";
import { table } from "../../net/doctor/format.ts";
import type { AgentReport, CheckResult, Facts, NodeFacts, PodFacts, Probe } from "../../net/doctor/types.ts";
import { compile } from "../../net/policy/compile.ts";
import { policyView } from "../../net/policy/state.ts";

const NOW = Date.parse("2026-11-23T12:00:00Z");
const N = [1, 2, 3].map((i) => ({
  name: `lab-n${i}`,
  peer: `aa:00:00:00:00:0${i}`,
  ip: `198.18.0.1${i}`,
  bridge: `10.3${i + 1}.0.1`,
  pods: [`10.3${i + 1}.0.2`, `10.3${i + 1}.0.3`],
}));

function report(i: number, o: { reachable?: (nick: string) => boolean } = {}): AgentReport {
  const me = N[i]!;
  const reach = o.reachable ?? (() => true);
  return {
    Ready: true,
    Reason: "ready",
    Router: {
      ProtocolMinVersion: 1,
      ProtocolMaxVersion: 1,
      Encryption: "disabled",
      Name: me.peer,
      NickName: me.name,
      Address: me.ip,
      Peers: N.map((p) => ({
        Name: p.peer,
        NickName: p.name,
        Addresses: [`${p.ip}:6783`],
        Reachable: p === me || reach(p.name),
        Connections: N.filter((q) => q !== p).map((q) => ({ Name: q.peer, NickName: q.name, Established: true })),
      })),
      Connections: N.filter((p) => p !== me).map((p) => ({
        Address: `${p.ip}:6783`,
        Outbound: true,
        State: "established",
        Info: `${p.peer}(${p.name})`,
      })),
      DatapathErrors: [],
    },
    Bridge: { Name: "weave", Address: `${me.bridge}/12`, MTU: 1450 },
    IPAM: {
      Range: "10.32.0.0/12",
      RangeNumIPs: 1048574,
      Ring: "r1",
      Status: "ready",
      Conflicts: [],
      Free: 1000,
      Asking: false,
      Entries: N.map((p) => ({
        Peer: p.peer,
        Nickname: p.name,
        Size: 349525,
        Free: 349000,
        Asking: false,
        Spans: ["x"],
      })),
      Owned: me.pods.map((ip, j) => ({
        ContainerID: `c${i}${j}`,
        Ifname: "eth0",
        Address: `${ip}/12`,
        Pod: `default/${me.name}-p${j + 1}`,
      })),
    },
  };
}

function node(i: number): NodeFacts {
  const me = N[i]!;
  return {
    name: me.name,
    ip: me.ip,
    agent: { running: true, pid: 100 + i, ready: true, report: report(i) },
    links: [
      { name: "lo", up: true, mtu: 65536 },
      { name: "eth0", kind: "veth", up: true, mtu: 1500 },
      { name: "weave", kind: "bridge", up: true, mtu: 1450 },
      { name: "vxlan-6784", kind: "vxlan", up: true, mtu: 1450, master: "weave", vxlanPort: 6784, vxlanLocal: me.ip },
      { name: `vethwepl${i}a`, kind: "veth", up: true, mtu: 1450, master: "weave" },
    ],
    addrs: [
      { ifname: "eth0", ip: me.ip, prefix: 24 },
      { ifname: "weave", ip: me.bridge, prefix: 12 },
    ],
    routes: [
      { dst: "10.32.0.0/12", dev: "weave" },
      { dst: "198.18.0.0/24", dev: "eth0" },
      { dst: `${me.bridge}/32`, dev: "weave", table: "local", type: "local" },
    ],
    firewall: { drops: [] },
    cni: {
      dir: `/run/weave-lab/lab/n${i + 1}/net.d`,
      files: [
        {
          name: "10-weave.conflist",
          text: JSON.stringify({
            cniVersion: "1.0.0",
            name: "weave",
            plugins: [{ type: "weave-net" }, { type: "portmap" }],
          }),
        },
      ],
    },
    log: {
      path: `/run/weave-lab/lab/n${i + 1}/agent.log`,
      lines: ["2026-11-23T11:59:00.000Z weave-agent: ready: bridge weave"],
    },
    npc: {
      running: true,
      pid: 200 + i,
      synced: true,
      statusText: "synced",
      table: compile({ state: NO_POLICIES.state, node: me.name }),
      log: { path: `/run/weave-lab/lab/n${i + 1}/npc.log`, lines: [] },
    },
  };
}

/** The API's policies, pods and namespaces of the healthy lab: none (tests/unit/doctor-npc-checks.test.ts has policies). */
const NO_POLICIES = policyView({ pods: [], namespaces: [], policies: [] });

function pods(): PodFacts[] {
  return N.flatMap((n, i) =>
    n.pods.map((ip, j) => ({
      name: `${n.name}-p${j + 1}`,
      node: n.name,
      containerId: `c${i}${j}`,
      expectedIp: ip,
      ip,
      mtu: 1450,
      gateway: n.bridge,
    })),
  );
}

function probes(ok: (p: Omit<Probe, "ok" | "detail">) => boolean = () => true): Probe[] {
  const out: Omit<Probe, "ok" | "detail">[] = [];
  for (const a of N) {
    out.push({ kind: "ping-local", from: a.name, to: a.name, src: `${a.name}-p1`, dst: a.pods[1]! });
    for (const b of N) {
      if (a === b) continue;
      out.push({ kind: "ping", from: a.name, to: b.name, src: `${a.name}-p1`, dst: b.pods[0]! });
      out.push({ kind: "ping-df", from: a.name, to: b.name, src: `${a.name}-p1`, dst: b.pods[0]! });
      out.push({ kind: "tcp-6783", from: a.name, to: b.name, src: a.name, dst: `${b.ip}:6783` });
    }
  }
  return out.map((p) => ({ ...p, ok: ok(p), detail: p.kind === "ping-df" ? "1450 bytes" : "" }));
}

function lab(): Facts {
  return {
    mode: "lab",
    target: "lab",
    range: "10.32.0.0/12",
    nodes: [0, 1, 2].map(node),
    pods: pods(),
    probes: probes(),
    policy: { source: "lab", view: NO_POLICIES },
    now: NOW,
    hints: {
      startAgent: (n) => `start its agent: weave lab agent start ${n} --name lab`,
      agentLogs: (n) => `${n}/agent.log`,
      onNode: (n) => `ip netns exec ${n} `,
    },
  };
}

const fails = (rs: CheckResult[]) => rs.filter((r) => r.status === "fail").map((r) => `${r.name}@${r.node ?? "-"}`);
const hit = (rs: CheckResult[], name: string, node?: string) =>
  rs.find((r) => r.name === name && r.status === "fail" && r.node === node);
const touches = (p: { from: string; to: string }, n: string) => p.from === n || p.to === n;

describe("doctor checks on a healthy lab", () => {
  test("every check of the catalog that applies passes; exit 0", () => {
    const rs = evaluate(lab());
    expect(fails(rs)).toEqual([]);
    expect(rs.filter((r) => r.status === "warn")).toEqual([]);
    const names = new Set(rs.map((r) => r.name));
    for (const c of CATALOG.filter((c) => !c.what.startsWith("(cluster)"))) expect(names).toContain(c.name);
    const s = summarize(rs);
    expect(s.exitCode).toBe(0);
    expect(s.line).toBe(`✅ ${names.size} checks passed`);
  });

  test("the table folds passing rows and ends every failure with its fix", () => {
    const f = lab();
    f.nodes[1]!.agent = { running: false, pid: 101 };
    const text = table(evaluate(f), { width: 200 });
    expect(text).toContain("agent             2 nodes  pass");
    expect(text).toMatch(
      /agent +lab-n2 +FAIL +the agent is not running: pid 101 is gone\n +fix: start its agent: weave lab agent start lab-n2 --name lab/,
    );
  });
});

describe("each fault fails the right check on the right node", () => {
  test("an agent stopped: agent, mesh-peers, and the pings and connects to it are blamed on it", () => {
    const f = lab();
    f.nodes[1]!.agent = { running: false, pid: 101 };
    for (const i of [0, 2]) f.nodes[i]!.agent.report = report(i, { reachable: (n) => n !== "lab-n2" });
    f.nodes[0]!.agent.report!.Router!.Connections[0] = {
      Address: "198.18.0.12:6783",
      Outbound: true,
      State: "failed",
      Info: "connection refused",
    };
    f.probes = probes((p) => p.kind === "ping-local" || p.kind === "ping-df" || !touches(p, "lab-n2"));
    const rs = evaluate(f);
    expect(hit(rs, "agent", "lab-n2")?.fix).toContain("weave lab agent start lab-n2");
    expect(hit(rs, "mesh-peers", "lab-n2")?.evidence).toBe(
      "not reachable from lab-n1 and lab-n3; its agent is not running",
    );
    expect(hit(rs, "mesh-connections", "lab-n2")?.evidence).toContain("lab-n1 -> 198.18.0.12:6783: connection refused");
    expect(hit(rs, "ping-cross-node", "lab-n2")?.fix).toContain("weave lab agent start lab-n2");
    expect(hit(rs, "tcp-6783", "lab-n2")?.fix).toContain("nothing listens on 6783");
    expect(hit(rs, "udp-6784", "lab-n2")).toBeUndefined();
    expect(rs.find((r) => r.name === "ipam-orphans" && r.node === "lab-n2")?.status).toBe("warn");
    expect(summarize(rs).line).toStartWith("❌ 5 of");
  });

  test("UDP 6784 dropped by nftables on one node: udp-6784 names the node and rule; the ping failure points there", () => {
    const f = lab();
    f.nodes[1]!.firewall = {
      drops: [
        { proto: "udp", port: 6784, table: "inet t", chain: "input", rule: "udp dport 6784 drop", certain: true },
      ],
    };
    f.probes = probes((p) => p.kind !== "ping" || !touches(p, "lab-n2"));
    const rs = evaluate(f);
    expect(fails(rs).sort()).toEqual(["ping-cross-node@lab-n2", "udp-6784@lab-n2"]);
    expect(hit(rs, "udp-6784", "lab-n2")!.fix).toContain("ip netns exec lab-n2 nft -a list table inet t");
    expect(hit(rs, "ping-cross-node", "lab-n2")!.fix).toContain("drops UDP 6784");
  });

  test("UDP 6784 lost with no rule on the nodes: inferred from pings failing between connected agents", () => {
    const f = lab();
    f.probes = probes((p) => p.kind !== "ping" || !touches(p, "lab-n3"));
    const r = hit(evaluate(f), "udp-6784", "lab-n3")!;
    expect(r.evidence).toContain("though their agents are connected over TCP 6783");
    expect(r.fix).toContain("iptables-save");
  });

  test("a firewall rule that may drop (policy drop) is a warning, not a failure", () => {
    const f = lab();
    f.nodes[0]!.firewall = {
      drops: [
        {
          proto: "tcp",
          port: 6783,
          table: "inet fw",
          chain: "input",
          rule: "policy drop (hook input)",
          certain: false,
        },
      ],
    };
    const rs = evaluate(f);
    expect(fails(rs)).toEqual([]);
    expect(rs.find((r) => r.name === "tcp-6783" && r.node === "lab-n1")?.status).toBe("warn");
  });

  test("a wrong underlay MTU on one node: mtu names it with both ways out; full-size pings blame it", () => {
    const f = lab();
    f.nodes[1]!.links!.find((l) => l.name === "eth0")!.mtu = 1400;
    f.probes = probes((p) => p.kind !== "ping-df" || !touches(p, "lab-n2"));
    const rs = evaluate(f);
    expect(fails(rs).sort()).toEqual(["mtu@lab-n2", "ping-full-size@lab-n2"]);
    expect(hit(rs, "mtu", "lab-n2")!.fix).toBe(
      "give eth0 on lab-n2 an MTU of at least 1500 again, or set WEAVE_MTU=1350 on every node and restart the agents (then re-create the pods)",
    );
  });

  test("a pod or node whose MTU differs from the others", () => {
    const f = lab();
    f.pods[0]!.mtu = 1500;
    f.nodes[2]!.links!.find((l) => l.name === "weave")!.mtu = 1400;
    f.nodes[2]!.links!.find((l) => l.name === "vxlan-6784")!.mtu = 1400;
    f.nodes[2]!.links!.find((l) => l.name === "vethwepl2a")!.mtu = 1400;
    for (const p of f.pods.filter((p) => p.node === "lab-n3")) p.mtu = 1400;
    const rs = evaluate(f);
    expect(hit(rs, "mtu", "lab-n1")!.evidence).toContain("pod lab-n1-p1 has 1500");
    expect(hit(rs, "mtu", "lab-n3")!.evidence).toContain("differs from the other nodes' 1450");
  });

  test("a cached path MTU makes the full-size ping a warning that says how to retest", () => {
    const f = lab();
    const p = f.probes.find((x) => x.kind === "ping-df")!;
    Object.assign(p, { ok: false, cachedMtu: 1350, detail: "1450 bytes, path MTU 1350 cached" });
    const r = evaluate(f).find((x) => x.name === "ping-full-size" && x.status === "warn")!;
    expect(r.node).toBe(p.from);
    expect(r.fix).toContain("ip route flush cache");
  });

  test("a route overlapping the pod range", () => {
    const f = lab();
    f.nodes[1]!.routes!.push({ dst: "10.32.0.0/16", dev: "eth0" });
    const rs = evaluate(f);
    expect(fails(rs)).toEqual(["range-overlap@lab-n2"]);
    expect(hit(rs, "range-overlap", "lab-n2")!.fix).toContain(
      "ip netns exec lab-n2 ip route del 10.32.0.0/16 dev eth0",
    );
  });

  test("a node address inside the pod range; a default route is fine; a wider route warns", () => {
    const f = lab();
    f.nodes[0]!.addrs!.push({ ifname: "eth1", ip: "10.33.1.1", prefix: 24 });
    f.nodes[1]!.routes!.push(
      { dst: "0.0.0.0/0", gateway: "198.18.0.1", dev: "eth0" },
      { dst: "10.0.0.0/8", gateway: "198.18.0.1", dev: "eth0" },
    );
    const rs = evaluate(f);
    expect(hit(rs, "range-overlap", "lab-n1")!.evidence).toContain("address 10.33.1.1/24 on eth1 is inside it");
    expect(rs.find((r) => r.name === "range-overlap" && r.node === "lab-n2")!.status).toBe("warn");
  });

  test("a second CNI conflist, and none at all", () => {
    const f = lab();
    f.nodes[1]!.cni!.files.push(
      { name: "05-flannel.conflist", text: JSON.stringify({ name: "cbr0", plugins: [{ type: "flannel" }] }) },
      { name: "99-loopback.conf", text: '{"type":"loopback"}' },
      { name: "README", text: "x" },
    );
    f.nodes[2]!.cni!.files = [];
    const rs = evaluate(f);
    expect(hit(rs, "cni-config", "lab-n2")!.evidence).toBe(
      "/run/weave-lab/lab/n2/net.d holds 2 network configs: another network's 05-flannel.conflist (flannel) beside weave's 10-weave.conflist; the runtime uses 05-flannel.conflist; passed over 99-loopback.conf (only loopback)",
    );
    expect(hit(rs, "cni-config", "lab-n3")!.fix).toContain("weave setup-cni --conf-dir /run/weave-lab/lab/n3/net.d");
  });

  test("a pod's default route removed, or via somewhere else; a pod without an address or not held", () => {
    const f = lab();
    delete f.pods[2]!.gateway;
    f.pods[3]!.gateway = "10.33.0.99";
    f.pods[1]!.ip = "10.31.0.3";
    delete f.pods[4]!.ip;
    f.nodes[2]!.agent.report!.IPAM.Owned!.pop();
    const rs = evaluate(f);
    expect(rs.filter((r) => r.name === "pod-route" && r.status === "fail").map((r) => r.evidence)).toEqual([
      "pod lab-n2-p1 has no default route (should be via 10.33.0.1, the bridge)",
      "pod lab-n2-p2's default route goes via 10.33.0.99, not via the bridge 10.33.0.1",
    ]);
    expect(hit(rs, "pod-route", "lab-n2")!.fix).toBe(
      "put it back: ip netns exec lab-n2-p1 ip route add default via 10.33.0.1 dev eth0, or delete the pod so it is wired again",
    );
    expect(rs.filter((r) => r.name === "pod-address" && r.status === "fail").map((r) => r.evidence)).toEqual([
      "pod lab-n1-p2: 10.31.0.3 is outside the pod range",
      "pod lab-n3-p1: eth0 has no IPv4 address",
      "pod lab-n3-p2: 10.34.0.3 is not held by the agent of lab-n3, so it can be handed out twice",
    ]);
  });

  test("devices missing or down", () => {
    const f = lab();
    f.nodes[0]!.links = f.nodes[0]!.links!.filter((l) => l.name !== "vxlan-6784");
    f.nodes[1]!.links!.find((l) => l.name === "weave")!.up = false;
    const rs = evaluate(f);
    expect(hit(rs, "devices", "lab-n1")!.evidence).toBe("no vxlan-6784");
    expect(hit(rs, "devices", "lab-n2")!.evidence).toBe("weave is down");
  });

  test("IPAM: not ready, a ring conflict, exhausted, space of a peer that is not a lab node", () => {
    const f = lab();
    f.nodes[0]!.agent.report!.IPAM.Status = "awaiting consensus of 3 peers: waiting for aa:00:00:00:00:02";
    f.nodes[1]!.agent.report!.IPAM.Conflicts = ["seeded by different peers"];
    for (const n of f.nodes) for (const e of n.agent.report!.IPAM.Entries!) e.Free = 0;
    f.nodes[2]!.agent.report!.IPAM.Entries!.push({
      Peer: "bb:00:00:00:00:09",
      Nickname: "old-node",
      Size: 1024,
      Free: 0,
      Asking: false,
      Spans: ["10.40.0.0-10.40.3.255"],
    });
    const rs = evaluate(f);
    expect(hit(rs, "ipam-ready", "lab-n1")!.fix).toContain("every peer of --peers");
    expect(hit(rs, "ipam-ready", "lab-n2")!.evidence).toBe("ring conflict: seeded by different peers");
    expect(hit(rs, "ipam-space")!.evidence).toContain("exhausted");
    expect(hit(rs, "ipam-orphans")!.fix).toBe(
      "hand its space to the others: ip netns exec lab-n1 weave rmpeer bb:00:00:00:00:09",
    );
  });

  test("a peer on another protocol version; datapath errors; recent error lines in a log", () => {
    const f = lab();
    const r = f.nodes[2]!.agent.report!.Router!;
    [r.ProtocolMinVersion, r.ProtocolMaxVersion] = [2, 3];
    f.nodes[0]!.agent.report!.Router!.DatapathErrors = ["fdb add 0a:58:0a:25:00:02: EEXIST"];
    f.nodes[1]!.log!.lines.push(
      "2026-11-23T11:58:00.000Z weave-agent: mesh: connection to lab-n3 (x) at 198.18.0.13:6783 lost: nothing heard for 7s",
      "2026-11-23T10:00:00.000Z weave-agent: mesh: dropping connection from z: bad preamble",
    );
    const rs = evaluate(f);
    expect(hit(rs, "mesh-protocol", "lab-n3")!.evidence).toContain("speaks 2-3, lab-n1 speaks 1-1");
    expect(hit(rs, "agent-logs", "lab-n1")!.evidence).toContain("EEXIST");
    const w = rs.find((x) => x.name === "agent-logs" && x.node === "lab-n2")!;
    expect(w.status).toBe("warn");
    expect(w.evidence).toStartWith("1 error line in the last 10 min");
  });
});

describe("node mode: this node and the peers its report names", () => {
  function nodeMode(): Facts {
    const f = lab();
    const self = f.nodes[0]!;
    delete self.log;
    const remotes: NodeFacts[] = N.slice(1).map((n) => ({ name: n.name, ip: n.ip, remote: true, agent: {} }));
    return {
      ...f,
      mode: "node",
      target: self.name,
      nodes: [self, ...remotes],
      pods: [],
      probes: f.probes
        .filter((p) => p.from === self.name && p.kind !== "ping-local")
        .map((p) => ({ ...p, src: self.name })),
      hints: { ...f.hints, onNode: () => "" },
    };
  }

  test("healthy: passes, checking only what one node can see", () => {
    const rs = evaluate(nodeMode());
    expect(fails(rs)).toEqual([]);
    expect(rs.some((r) => r.name === "pod-route" || r.name === "agent-logs")).toBe(false);
    expect(rs.find((r) => r.name === "mesh-peers" && r.node === "lab-n2")!.evidence).toBe("reachable from lab-n1");
  });

  test("a peer this node cannot reach, whose 6783 times out", () => {
    const f = nodeMode();
    f.nodes[0]!.agent.report = report(0, { reachable: (n) => n !== "lab-n3" });
    for (const p of f.probes)
      if (p.to === "lab-n3" && p.kind !== "ping-df") Object.assign(p, { ok: false, detail: "timed out after 1 s" });
    f.probes = f.probes.filter((p) => !(p.to === "lab-n3" && p.kind === "ping-df"));
    const rs = evaluate(f);
    expect(hit(rs, "mesh-peers", "lab-n3")!.evidence).toBe("not reachable from lab-n1");
    expect(rs.filter((r) => r.name === "tcp-6783" && r.status === "fail").length).toBe(1);
    expect(fails(rs)).toContain("ping-cross-node@-");
  });

  test("unreachable peers holding space are a warning naming weave rmpeer", () => {
    const f = nodeMode();
    f.nodes[0]!.agent.report = report(0, { reachable: (n) => n !== "lab-n3" });
    const r = evaluate(f).find((x) => x.name === "ipam-orphans")!;
    expect(r.status).toBe("warn");
    expect(r.fix).toBe("if lab-n3 is gone for good, hand its space to the others: weave rmpeer aa:00:00:00:00:03");
  });

  test("the agent not answering fails agent and skips what needs its report", () => {
    const f = nodeMode();
    f.nodes = [{ ...f.nodes[0]!, agent: { error: "http://127.0.0.1:6784: ConnectionRefused" } }];
    f.probes = [];
    const rs = evaluate(f);
    expect(fails(rs)).toEqual(["agent@lab-n1"]);
  });
});

describe("blame", () => {
  test("one node in every failed pair is blamed; two nodes failing each other are not told apart", () => {
    expect(
      blame([
        { from: "a", to: "b" },
        { from: "c", to: "b" },
        { from: "b", to: "a" },
      ]).map((g) => g.node),
    ).toEqual(["b"]);
    expect(
      blame([
        { from: "a", to: "b" },
        { from: "b", to: "a" },
      ]).map((g) => g.node),
    ).toEqual([undefined]);
    expect(
      blame([
        { from: "a", to: "b" },
        { from: "c", to: "d" },
      ]).map((g) => g.node),
    ).toEqual(["a", "c"]);
    expect(blame([])).toEqual([]);
  });
});
