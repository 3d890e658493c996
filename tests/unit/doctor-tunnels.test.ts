/**
 * doctor's `tunnels` check over fake facts of a 3-node lab with a password: every pair
 * with a live tunnel passes; each fault, made by changing one fact of one agent's
 * /report (a handshake too old or missing, no tunnel and why, a device not up, one agent
 * without a password), fails naming the pair or the node and the fix. Encryption off
 * everywhere passes saying so. Also what encryption changes elsewhere: the fail-closed
 * table is no firewall in the way, a UDP 6785 drop is read, a refusal in the log from a
 * peer connected since is over.
 */
import { describe, expect, test } from "bun:test";
import { checkMeshProtocol } from "../../net/doctor/checks-agent.ts";
import { checkTunnels, HANDSHAKE_STALE_S } from "../../net/doctor/checks-tunnels.ts";
import { CATALOG, evaluate } from "../../net/doctor/evaluate.ts";
import { parseNftDrops } from "../../net/doctor/parse.ts";
import type { AgentReport, ConnectionAttrs, Facts, NodeFacts } from "../../net/doctor/types.ts";

const N = [1, 2, 3].map((i) => ({ name: `lab-n${i}`, peer: `aa:00:00:00:00:0${i}`, ip: `198.18.0.1${i}` }));

const live = (age = 20): ConnectionAttrs => ({
  name: "fastdp",
  mtu: 1390,
  encrypted: true,
  wireguard: "userspace",
  device: "weave-wg",
  handshakeAgoS: age,
  rxBytes: 1000,
  txBytes: 1000,
});

function report(i: number, encryption: boolean, attrs: (to: string) => ConnectionAttrs | null): AgentReport {
  const me = N[i]!;
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
        Connections: N.filter((q) => q !== p).map((q) => ({ Name: q.peer, NickName: q.name, Established: true })),
      })),
      Connections: N.filter((p) => p !== me).map((p) => ({
        Address: `${p.ip}:6783`,
        Outbound: true,
        State: "established",
        Info: `${p.peer}(${p.name})`,
        Attrs: encryption ? attrs(p.name) : { name: "fastdp", mtu: 1440, encrypted: false },
      })),
    },
    Bridge: { Name: "weave", Address: "10.32.0.1/12", MTU: 1390 },
    IPAM: { Range: "10.32.0.0/12", Status: "ready" },
  };
}

type Tweak = { encryption?: boolean; attrs?: (to: string) => ConnectionAttrs | null; firewall?: NodeFacts["firewall"] };

function lab(tweaks: Record<number, Tweak> = {}, everywhere: { encryption?: boolean } = {}): Facts {
  return {
    mode: "lab",
    target: "lab",
    nodes: N.map((n, i) => {
      const t = tweaks[i] ?? {};
      return {
        name: n.name,
        ip: n.ip,
        agent: {
          running: true,
          ready: true,
          report: report(i, t.encryption ?? everywhere.encryption ?? true, t.attrs ?? (() => live())),
        },
        firewall: t.firewall ?? { drops: [] },
      };
    }),
    pods: [],
    probes: [],
    now: 0,
    hints: {
      startAgent: (n) => `weave lab agent start ${n}`,
      agentLogs: (n) => `${n}/agent.log`,
      onNode: (n) => `ip netns exec ${n} `,
    },
  };
}

const fails = (f: Facts) => checkTunnels(f).filter((r) => r.status === "fail");

describe("tunnels", () => {
  test("every pair with a live tunnel passes, in one row", () => {
    const rs = checkTunnels(lab());
    expect(rs).toEqual([
      {
        name: "tunnels",
        status: "pass",
        evidence: "3 pairs of peers have live tunnels (wireguard-go), last handshakes 20-20 s ago",
        fix: "",
      },
    ]);
    // in the catalog, after udp-6784, and part of evaluate
    const names = CATALOG.map((c) => c.name);
    expect(names.indexOf("tunnels")).toBe(names.indexOf("udp-6784") + 1);
    expect(evaluate(lab()).some((r) => r.name === "tunnels" && r.status === "pass")).toBe(true);
  });

  test("encryption off everywhere passes, saying so", () => {
    const rs = checkTunnels(lab({}, { encryption: false }));
    expect(rs).toHaveLength(1);
    expect(rs[0]!.status).toBe("pass");
    expect(rs[0]!.evidence).toStartWith("encryption is off (no WEAVE_PASSWORD on 3 agents)");
  });

  test("one node without a password among encrypted ones fails on that node", () => {
    const rs = fails(lab({ 2: { encryption: false } }));
    expect(rs.map((r) => r.node)).toEqual(["lab-n3"]);
    expect(rs[0]!.evidence).toBe(
      "encryption off on lab-n3 while on on lab-n1 and lab-n2: nodes with and without a password refuse each other",
    );
    expect(rs[0]!.fix).toContain("the same WEAVE_PASSWORD");
    // the odd one out is named: one node with a password among plain ones
    expect(fails(lab({ 0: { encryption: true } }, { encryption: false })).map((r) => r.node)).toEqual(["lab-n1"]);
  });

  test("no handshake yet from one node (UDP 6785 blocked there): that node is named once, with the fix", () => {
    const f = lab({ 0: { attrs: () => ({ ...live(), handshakeAgoS: null }) } });
    const rs = fails(f);
    expect(rs).toHaveLength(1);
    expect(rs[0]!.node).toBe("lab-n1");
    expect(rs[0]!.evidence).toBe(
      "2 pairs without a live tunnel: no handshake yet between lab-n1 and lab-n2 (seen from lab-n1, wireguard-go) and " +
        "no handshake yet between lab-n1 and lab-n3 (seen from lab-n1, wireguard-go)",
    );
    expect(rs[0]!.fix).toStartWith("open UDP 6785 between lab-n1 and the other nodes");
    expect(rs[0]!.fix).toContain("lab-n1/agent.log");
    expect(rs[0]!.fix).toContain("wrong password");
    // the pair that is fine still says so
    expect(checkTunnels(f).find((r) => r.status === "pass")?.evidence).toStartWith("1 pair of peers has a live tunnel");
  });

  test("the firewall rule that drops UDP 6785 is in the evidence", () => {
    const rule = "udp dport 6785 drop";
    const f = lab({
      1: {
        attrs: () => ({ ...live(), handshakeAgoS: null }),
        firewall: { drops: parseNftDrops(`table inet t {\n chain input {\n  ${rule}\n }\n}`) },
      },
    });
    const [r] = fails(f);
    expect(r!.node).toBe("lab-n2");
    expect(r!.evidence).toContain(`nftables on lab-n2 drops UDP 6785: "${rule}" (table inet t)`);
  });

  test("a handshake older than 3 minutes is a dead tunnel; just under is fine", () => {
    const old = HANDSHAKE_STALE_S + 1;
    const stale = fails(lab({ 1: { attrs: (to) => (to === "lab-n3" ? live(old) : live()) } }));
    expect(stale).toHaveLength(1);
    // one failed pair: the two nodes cannot be told apart
    expect(stale[0]!.node).toBeUndefined();
    expect(stale[0]!.evidence).toBe(
      `1 pair without a live tunnel: last handshake between lab-n2 and lab-n3 ${old} s ago (seen from lab-n2): no live session (over 180 s)`,
    );
    expect(stale[0]!.fix).toContain("open UDP 6785 between lab-n2 and lab-n3 (both ways");
    expect(fails(lab({ 1: { attrs: () => live(HANDSHAKE_STALE_S) } }))).toEqual([]);
  });

  test("no tunnel, and why; a device not up; a connection not encrypted", () => {
    const noKey = fails(
      lab({
        2: { attrs: () => ({ ...live(), encrypted: false, noTunnel: "its WireGuard public key is not known yet" }) },
      }),
    );
    expect(noKey[0]!.node).toBe("lab-n3");
    expect(noKey[0]!.evidence).toContain("lab-n3 has no tunnel to lab-n1: its WireGuard public key is not known yet");
    expect(noKey[0]!.fix).toContain("'wireguard: no tunnel to'");

    const starting = fails(lab({ 0: { attrs: () => ({ name: "fastdp", mtu: 1390, encrypted: true }) } }));
    expect(starting[0]!.node).toBe("lab-n1");
    expect(starting[0]!.evidence).toContain("lab-n1's WireGuard device is not up (no tunnel to lab-n2 yet)");

    const plain = fails(lab({ 0: { attrs: () => ({ ...live(), encrypted: false }) } }));
    expect(plain[0]!.evidence).toContain("lab-n1's connection to lab-n2 is not encrypted");
  });

  test("node mode: one report is enough to judge this node's pairs", () => {
    const f = lab();
    f.mode = "node";
    f.nodes = [f.nodes[0]!, ...f.nodes.slice(1).map((n) => ({ name: n.name, ip: n.ip, remote: true, agent: {} }))];
    expect(checkTunnels(f)[0]!.evidence).toStartWith("2 pairs of peers have live tunnels");
    f.nodes[0]!.agent.report!.Router!.Connections[1]!.Attrs = { ...live(), handshakeAgoS: null };
    expect(fails(f)[0]!.evidence).toContain("no handshake yet between lab-n1 and lab-n3");
  });

  test("without any report (cluster mode) the check says nothing", () => {
    const f = lab();
    for (const n of f.nodes) n.agent = { running: true };
    expect(checkTunnels(f)).toEqual([]);
  });
});

describe("what encryption changes in the other checks", () => {
  test("the fail-closed table inet weave-wg is ours, not a firewall in the way; UDP 6785 drops are read", () => {
    const ruleset = [
      "table inet weave-wg {",
      "  chain output {",
      "    type filter hook output priority filter; policy accept;",
      '    udp dport 6784 oifname != "weave-wg" counter packets 0 bytes 0 drop comment "weave-wg-plain-vxlan-out"',
      "  }",
      "}",
      "table inet fw {",
      "  chain input {",
      "    type filter hook input priority filter; policy accept;",
      "    udp dport 6785 counter drop",
      "  }",
      "}",
    ].join("\n");
    const drops = parseNftDrops(ruleset);
    expect(drops.map((d) => `${d.table} ${d.proto} ${d.port} ${d.certain}`)).toEqual(["inet fw udp 6785 true"]);
    // and udp-6784 does not take a 6785 drop for its own
    const f = lab({ 0: { firewall: { drops } } });
    expect(evaluate(f).filter((r) => r.name === "udp-6784" && r.status !== "pass")).toEqual([]);
  });

  test("a password refusal in the log from a peer connected since is over; one from a peer still away is not", () => {
    const f = lab();
    const line =
      "2026-12-01T17:12:25.319Z weave-agent: mesh: handshake with 198.18.0.12:6783 failed: wrong password or not a weave peer (x): refused";
    f.nodes[2]!.log = { path: "n3/agent.log", lines: [line] };
    expect(checkMeshProtocol(f).filter((r) => r.status === "fail")).toEqual([]);
    f.nodes[2]!.agent.report!.Router!.Connections = f.nodes[2]!.agent.report!.Router!.Connections.filter(
      (c) => !c.Address.startsWith("198.18.0.12:"),
    );
    const [r] = checkMeshProtocol(f).filter((x) => x.status === "fail");
    expect(r!.node).toBe("lab-n3");
    expect(r!.evidence).toContain("wrong password");
  });
});
