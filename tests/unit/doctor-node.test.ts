/**
 * `weave doctor --node` gathering, against a fake agent (Bun.serve on 127.0.0.1) and a
 * fake command runner that answers `ip`, `bridge`, `nft`, `ping` and the TCP connect
 * the way a node's kernel would: what it asks, and what the checks make of it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gatherNode } from "../../net/doctor/gather/node.ts";
import { evaluate, summarize } from "../../net/doctor/evaluate.ts";
import type { Exec, ExecResult } from "../../net/doctor/gather/exec.ts";

const PEERS = [
  { Name: "aa:00:00:00:00:01", NickName: "n1", Addresses: ["198.18.0.11:6783"], Reachable: true, Connections: [] },
  { Name: "aa:00:00:00:00:02", NickName: "n2", Addresses: ["198.18.0.12:6783"], Reachable: true, Connections: [] },
  { Name: "aa:00:00:00:00:03", NickName: "n3", Addresses: ["198.18.0.13:6783"], Reachable: false, Connections: [] },
];
const REPORT = {
  Ready: true,
  Reason: "ready",
  Router: {
    ProtocolMinVersion: 1,
    ProtocolMaxVersion: 1,
    Encryption: "disabled",
    Name: PEERS[0]!.Name,
    NickName: "n1",
    Address: "198.18.0.11",
    Peers: PEERS,
    Connections: [{ Address: "198.18.0.13:6783", Outbound: true, State: "failed", Info: "connect ETIMEDOUT" }],
    DatapathErrors: [],
  },
  Bridge: { Name: "weave", Address: "10.32.0.1/12", MTU: 1450 },
  IPAM: {
    Range: "10.32.0.0/12",
    RangeNumIPs: 1048574,
    Status: "ready",
    Conflicts: [],
    Entries: PEERS.map((p) => ({ Peer: p.Name, Nickname: p.NickName, Size: 100, Free: 90, Asking: false, Spans: [] })),
    Owned: [{ ContainerID: "c1", Ifname: "eth0", Address: "10.32.0.2/12", Pod: "default/a" }],
  },
};

const ok = (stdout: string): ExecResult => ({ code: 0, stdout, stderr: "", timedOut: false });
const calls: string[] = [];
const fakeExec: Exec = async (argv) => {
  const cmd = argv.join(" ");
  calls.push(cmd);
  if (cmd === "ip -j -d link show")
    return ok(
      JSON.stringify([
        { ifname: "eth0", flags: ["UP"], mtu: 1500 },
        { ifname: "weave", flags: ["UP"], mtu: 1450, linkinfo: { info_kind: "bridge" } },
        {
          ifname: "vxlan-6784",
          flags: ["UP"],
          mtu: 1450,
          master: "weave",
          linkinfo: { info_kind: "vxlan", info_data: { port: 6784, local: "198.18.0.11" } },
        },
      ]),
    );
  if (cmd === "ip -j -4 addr show")
    return ok(
      JSON.stringify([
        { ifname: "eth0", addr_info: [{ family: "inet", local: "198.18.0.11", prefixlen: 24 }] },
        { ifname: "weave", addr_info: [{ family: "inet", local: "10.32.0.1", prefixlen: 12 }] },
      ]),
    );
  if (cmd === "ip -j -4 route show table all")
    return ok(
      JSON.stringify([
        { dst: "10.32.0.0/12", dev: "weave" },
        { dst: "10.32.5.0/24", gateway: "198.18.0.1", dev: "eth0" },
      ]),
    );
  if (cmd === "nft list ruleset")
    return ok(
      "table inet fw {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport 6784 drop\n\t}\n}\n",
    );
  if (cmd.startsWith("bridge -j fdb show"))
    return ok(
      JSON.stringify([
        { mac: "00:00:00:00:00:00", dst: "198.18.0.12" },
        { mac: "0a:58:0a:25:00:02", dst: "198.18.0.12" },
        { mac: "0a:58:0a:26:00:02", dst: "198.18.0.13" },
      ]),
    );
  if (argv[0] === "ping")
    return argv.at(-1) === "10.37.0.2" && !argv.includes("-M")
      ? ok("1 received")
      : argv.at(-1) === "10.32.0.2"
        ? ok("")
        : { code: 1, stdout: "", stderr: "", timedOut: false };
  if (argv[0] === "bash")
    return cmd.includes("198.18.0.12") ? ok("") : { code: 124, stdout: "", stderr: "", timedOut: true };
  return { code: 127, stdout: "", stderr: `unexpected ${cmd}`, timedOut: false };
};

describe("doctor --node gathering", () => {
  let server: ReturnType<typeof Bun.serve>;
  let dir: string;
  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => (new URL(req.url).pathname === "/report" ? Response.json(REPORT) : new Response("ready\n")),
    });
    dir = mkdtempSync(join(tmpdir(), "doctor-cni-"));
    writeFileSync(join(dir, "10-weave.conflist"), JSON.stringify({ name: "weave", plugins: [{ type: "weave-net" }] }));
  });
  afterAll(() => {
    server.stop(true);
    rmSync(dir, { recursive: true, force: true });
  });

  test("asks the agent and the kernel, probes peers found in the report and the FDB, and finds the faults", async () => {
    const lines: string[] = [];
    const f = await gatherNode(
      { exec: fakeExec, progress: (l) => lines.push(l) },
      { agentUrl: `http://127.0.0.1:${server.port}`, cniConfDir: dir },
    );
    expect(f.mode).toBe("node");
    expect(f.nodes.map((n) => `${n.name}${n.remote ? " (remote)" : ""} ${n.ip}`)).toEqual([
      "n1 198.18.0.11",
      "n2 (remote) 198.18.0.12",
      "n3 (remote) 198.18.0.13",
    ]);
    expect(calls).toContain("ping -n -W 1 -c 2 -i 0.2 10.37.0.2");
    expect(calls).toContain("ping -n -W 1 -c 2 -i 0.2 10.32.0.2");
    expect(calls).toContain("ping -n -W 1 -c 1 -M do -s 1422 10.37.0.2");
    expect(lines[0]).toBe("looking at the local agent and kernel");

    const rs = evaluate(f);
    const failed = rs
      .filter((r) => r.status === "fail")
      .map((r) => `${r.name}@${r.node ?? "-"}`)
      .sort();
    expect(failed).toEqual(
      [
        "mesh-connections@n3",
        "mesh-peers@n3",
        "ping-cross-node@-",
        "ping-full-size@-",
        "range-overlap@n1",
        "tcp-6783@-",
        "udp-6784@n1",
      ].sort(),
    );
    expect(rs.find((r) => r.name === "range-overlap")!.fix).toBe(
      "remove the route (ip route del 10.32.5.0/24 dev eth0) or pick an IPALLOC_RANGE clear of it",
    );
    expect(rs.find((r) => r.name === "agent")!.evidence).toBe("running and ready");
    expect(rs.find((r) => r.name === "cni-config")!.status).toBe("pass");
    expect(summarize(rs).exitCode).toBe(1);
  });

  test("an agent that does not answer: agent fails, kernel checks still run", async () => {
    const f = await gatherNode(
      { exec: fakeExec, progress: () => {} },
      { agentUrl: "http://127.0.0.1:1", cniConfDir: join(dir, "missing") },
    );
    const rs = evaluate(f);
    expect(rs.find((r) => r.name === "agent")!.status).toBe("fail");
    expect(rs.find((r) => r.name === "agent")!.evidence).toContain("does not answer");
    expect(rs.find((r) => r.name === "devices")!.status).toBe("pass");
    expect(rs.find((r) => r.name === "cni-config")!.evidence).toContain("ENOENT");
  });
});
