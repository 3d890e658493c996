/**
 * doctor's `datapath` check over fake /reports of a 3-node lab (`Router.DataPaths`):
 * every peer on the fast path passes (kernel VXLAN, or WireGuard with a password); a
 * pair on the sleeve warns once, both sides merged, with the agents' reason and "open
 * UDP 6784 between" the two addresses (6785 with encryption); pairs all involving one
 * node are blamed on it; a peer reached through a third node's sleeve warns with the
 * direct-connection fix; agents older than DataPaths are left out, never failed.
 */
import { describe, expect, test } from "bun:test";
import { checkDataPath } from "../../net/doctor/checks-datapath.ts";
import { CATALOG, evaluate } from "../../net/doctor/evaluate.ts";
import type { AgentReport, DataPath, Facts } from "../../net/doctor/types.ts";

const NOW = Date.parse("2026-11-23T12:00:00Z");
const N = [1, 2, 3].map((i) => ({ name: `lab-n${i}`, peer: `aa:00:00:00:00:0${i}`, ip: `198.18.0.1${i}` }));
const byName = (n: string) => N.find((x) => x.name === n)!;

const fastdp = (to: string): DataPath => ({ Name: byName(to).peer, NickName: to, Path: "fastdp" });
const sleeve = (to: string, port = "UDP 6784 (VXLAN)", agoS = 300): DataPath => ({
  Name: byName(to).peer,
  NickName: to,
  Path: "sleeve",
  Reason: `3 heartbeats in a row unanswered over the fast path: ${port} does not cross`,
  Since: new Date(NOW - agoS * 1000).toISOString(),
});
const routed = (to: string, via: string): DataPath => ({
  Name: byName(to).peer,
  NickName: to,
  Path: "sleeve",
  Via: byName(via).peer,
  ViaNickName: via,
  Reason: `no direct connection to ${to}: through ${via}'s sleeve`,
  Since: new Date(NOW - 60_000).toISOString(),
});

/** `paths[i]`: what node i reports to each peer (default fastdp); null: an older agent without DataPaths. */
type Paths = Record<number, Record<string, DataPath> | null>;

function report(i: number, encryption: boolean, paths: Paths): AgentReport {
  const me = N[i]!;
  const mine = paths[i];
  return {
    Ready: true,
    Router: {
      ProtocolMinVersion: 1,
      ProtocolMaxVersion: 2,
      Encryption: encryption,
      Name: me.peer,
      NickName: me.name,
      Address: me.ip,
      Peers: N.map((p) => ({
        Name: p.peer,
        NickName: p.name,
        Addresses: [`${p.ip}:6783`],
        Reachable: true,
        Connections: [],
      })),
      Connections: [],
      ...(mine === null ? {} : { DataPaths: N.filter((p) => p !== me).map((p) => mine?.[p.name] ?? fastdp(p.name)) }),
    },
    Bridge: { Name: "weave", Address: "10.32.0.1/12", MTU: 1376 },
    IPAM: { Range: "10.32.0.0/12", Status: "ready" },
  };
}

function lab(paths: Paths = {}, encryption = false): Facts {
  return {
    mode: "lab",
    target: "lab",
    nodes: N.map((n, i) => ({
      name: n.name,
      ip: n.ip,
      agent: { running: true, ready: true, report: report(i, encryption, paths) },
      firewall: { drops: [] },
    })),
    pods: [],
    probes: [],
    now: NOW,
    hints: {
      startAgent: (n) => `weave lab agent start ${n}`,
      agentLogs: (n) => `${n}/agent.log`,
      onNode: (n) => `ip netns exec ${n} `,
    },
  };
}

const warns = (f: Facts) => checkDataPath(f).filter((r) => r.status === "warn");

describe("datapath", () => {
  test("every peer on the fast path passes, in one row; in the catalog after tunnels", () => {
    expect(checkDataPath(lab())).toEqual([
      {
        name: "datapath",
        status: "pass",
        evidence: "every pair of nodes on the fast datapath (kernel VXLAN): 3 pairs",
        fix: "",
      },
    ]);
    const names = CATALOG.map((c) => c.name);
    expect(names.indexOf("datapath")).toBe(names.indexOf("tunnels") + 1);
    expect(evaluate(lab()).some((r) => r.name === "datapath" && r.status === "pass")).toBe(true);
  });

  test("with encryption the fast path is WireGuard", () => {
    const rs = checkDataPath(lab({}, true));
    expect(rs.map((r) => [r.status, r.evidence])).toEqual([
      ["pass", "every pair of nodes on the fast datapath (WireGuard): 3 pairs"],
    ]);
  });

  test("one pair on the sleeve warns once, both sides merged, with the reason and the addresses", () => {
    const f = lab({ 0: { "lab-n2": sleeve("lab-n2") }, 1: { "lab-n1": sleeve("lab-n1", undefined, 290) } });
    const rs = checkDataPath(f);
    const w = warns(f);
    expect(w).toHaveLength(1);
    // two nodes failing each other: neither is blamed
    expect(w[0]!.node).toBeUndefined();
    expect(w[0]!.evidence).toBe(
      "1 pair on the sleeve (userspace, UDP 6783: traffic flows, slower): lab-n1 <-> lab-n2 on the sleeve for 5 min: " +
        "3 heartbeats in a row unanswered over the fast path: UDP 6784 (VXLAN) does not cross (seen from lab-n1 and lab-n2)",
    );
    expect(w[0]!.fix).toStartWith("open UDP 6784 (VXLAN) between 198.18.0.11 and 198.18.0.12 (both ways)");
    expect(w[0]!.fix).not.toContain("6785");
    // the other pairs still pass, and the check warns, never fails
    expect(rs.filter((r) => r.status === "pass").map((r) => r.evidence)).toEqual([
      "2 other pairs on the fast datapath (kernel VXLAN)",
    ]);
    expect(rs.some((r) => r.status === "fail")).toBe(false);
  });

  test("seen from one side only, the other side's view is said", () => {
    const w = warns(lab({ 2: { "lab-n1": sleeve("lab-n1") } }));
    expect(w).toHaveLength(1);
    expect(w[0]!.evidence).toContain("lab-n1 <-> lab-n3 on the sleeve");
    expect(w[0]!.evidence).toContain("(seen from lab-n3) (lab-n1 reports fastdp)");
    expect(w[0]!.fix).toStartWith("open UDP 6784 (VXLAN) between 198.18.0.11 and 198.18.0.13");
  });

  test("every sleeve pair involving one node blames that node, naming each pair once", () => {
    const f = lab({
      0: { "lab-n3": sleeve("lab-n3") },
      1: { "lab-n3": sleeve("lab-n3") },
      2: { "lab-n1": sleeve("lab-n1"), "lab-n2": sleeve("lab-n2") },
    });
    const w = warns(f);
    expect(w).toHaveLength(1);
    expect(w[0]!.node).toBe("lab-n3");
    expect(w[0]!.evidence).toStartWith("2 pairs on the sleeve");
    expect(w[0]!.evidence.match(/lab-n1 <-> lab-n3/g)).toHaveLength(1);
    expect(w[0]!.evidence.match(/lab-n2 <-> lab-n3/g)).toHaveLength(1);
    expect(w[0]!.fix).toBe(
      "open UDP 6784 (VXLAN) between 198.18.0.13 (lab-n3) and 198.18.0.11 and 198.18.0.12 (both ways); " +
        "ip netns exec lab-n3 nft list ruleset shows what drops it on lab-n3; " +
        "the agents move the peers back to the fast path by themselves once 3 heartbeats in a row cross",
    );
    expect(
      checkDataPath(f)
        .filter((r) => r.status === "pass")
        .map((r) => r.evidence),
    ).toEqual(["1 other pair on the fast datapath (kernel VXLAN)"]);
  });

  test("a firewall rule dropping the fast path's port on a sleeve node is quoted", () => {
    const f = lab({ 0: { "lab-n2": sleeve("lab-n2") } });
    f.nodes[1]!.firewall = {
      drops: [
        { proto: "udp", port: 6784, table: "inet fw", chain: "input", rule: "udp dport 6784 drop", certain: true },
      ],
    };
    expect(warns(f)[0]!.evidence).toContain('nftables on lab-n2 drops UDP 6784: "udp dport 6784 drop" (table inet fw)');
  });

  test("with encryption the fix opens UDP 6785 (WireGuard)", () => {
    const port = "UDP 6785 (WireGuard)";
    const w = warns(lab({ 0: { "lab-n2": sleeve("lab-n2", port) }, 1: { "lab-n1": sleeve("lab-n1", port) } }, true));
    expect(w).toHaveLength(1);
    expect(w[0]!.evidence).toContain("UDP 6785 (WireGuard) does not cross");
    expect(w[0]!.fix).toStartWith("open UDP 6785 (WireGuard) between 198.18.0.11 and 198.18.0.12 (both ways)");
    expect(w[0]!.fix).not.toContain("6784");
  });

  test("a peer reached only through a third node warns, naming the pair, the node between and the fix", () => {
    const f = lab({ 0: { "lab-n3": routed("lab-n3", "lab-n2") }, 2: { "lab-n1": routed("lab-n1", "lab-n2") } });
    const rs = checkDataPath(f);
    const w = warns(f);
    expect(w).toHaveLength(1);
    expect(w[0]!.node).toBeUndefined();
    expect(w[0]!.evidence).toBe(
      "1 pair routed through another node's sleeve (userspace, slower): lab-n1 <-> lab-n3 have no direct connection: " +
        "their traffic goes through lab-n2's sleeve (seen from lab-n1 and lab-n3)",
    );
    expect(w[0]!.fix).toBe(
      "lab-n1 and lab-n3 have no direct connection: open TCP 6783 and UDP 6784/6783 between them (198.18.0.11 and 198.18.0.13); " +
        "see mesh-connections for why they do not connect",
    );
    expect(rs.filter((r) => r.status === "pass").map((r) => r.evidence)).toEqual([
      "2 other pairs on the fast datapath (kernel VXLAN)",
    ]);
    // with encryption, the UDP port of the fast path is WireGuard's
    const sealed = warns(
      lab({ 0: { "lab-n3": routed("lab-n3", "lab-n2") }, 2: { "lab-n1": routed("lab-n1", "lab-n2") } }, true),
    );
    expect(sealed[0]!.fix).toContain("open TCP 6783 and UDP 6785/6783 between them");
  });

  test("agents without DataPaths are left out; none reporting passes as not reported", () => {
    const none = checkDataPath(lab({ 0: null, 1: null, 2: null }));
    expect(none).toHaveLength(1);
    expect(none[0]!.status).toBe("pass");
    expect(none[0]!.evidence).toStartWith("not reported: the 3 agents report no data paths");

    // an older lab-n3: its pairs are judged from the other side, and it is named
    const some = checkDataPath(lab({ 2: null }));
    expect(some.map((r) => [r.status, r.evidence])).toEqual([
      [
        "pass",
        "every pair of nodes on the fast datapath (kernel VXLAN): 3 pairs; lab-n3 reports no data paths (older agent)",
      ],
    ]);
    // no report at all (the agent is down): nothing from this check
    const down = lab();
    for (const n of down.nodes) n.agent = { running: false };
    expect(checkDataPath(down)).toEqual([]);
  });

  test("node mode: this node's report judges its pairs with peers only known by name", () => {
    const f = lab({ 0: { "lab-n2": sleeve("lab-n2") } });
    f.mode = "node";
    f.target = "lab-n1";
    for (const n of f.nodes.slice(1)) {
      n.remote = true;
      n.agent = {};
    }
    const w = warns(f);
    expect(w).toHaveLength(1);
    expect(w[0]!.fix).toStartWith("open UDP 6784 (VXLAN) between 198.18.0.11 and 198.18.0.12");
    expect(checkDataPath(f).find((r) => r.status === "pass")!.evidence).toBe(
      "1 other pair on the fast datapath (kernel VXLAN)",
    );
  });
});
