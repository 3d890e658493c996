/**
 * The encrypted datapath on a 3-node lab with a password (docs/datapath.md, "Encrypted
 * datapath"): every pod reaches every pod; a capture in the underlay (every port of br0) while pods
 * exchange known payloads (a TCP send, a ping's pad) finds them nowhere and, between the
 * nodes, only WireGuard (UDP 6785) and the mesh (TCP 6783); a node with another password
 * joins nothing and reaches no pod; kill -9 of wireguard-go, and of the agent, under a
 * running ping: no plaintext VXLAN on the underlay at any moment, traffic back within 10 s.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { canRunHost, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { eventually, until, untilSaid } from "../support/wait.ts";
import { labAgent, labBlock, labDown, labUp, meshViews, pingMatrix, podNetns, wgSocketDir } from "../../net/lab/lab.ts";
import { labNodeAdd, labNodeRemove } from "../../net/lab/changes.ts";
import { findNode, readLab, type LabPod, type LabState, mustReadLab } from "../../net/lab/state.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { netnsPath } from "../../net/host/netns.ts";
import { pidAlive } from "../../net/host/process.ts";
import { failClosedCounters } from "../../net/host/wg-fail-closed.ts";
import { uapiGet } from "../../net/host/wg-uapi-socket.ts";
import { keyFromBase64, keyToBase64, publicKeyOf } from "../../net/crypto/wg-keys.ts";

const haveTools = ["wireguard-go", "tcpdump", "nft"].every((t) => Bun.which(t));
const MARKER = `weave-plaintext-marker-${randomBytes(6).toString("hex")}`;
const PAD = "77656176652d736563726574"; // "weave-secret", ping's -p pad
const PAD_TEXT = Buffer.from(PAD, "hex");

type Report = {
  Router: {
    Encryption: boolean;
    Peers: { NickName: string; Reachable: boolean }[];
    Connections: { State: string; Attrs: { encrypted: boolean; wireguard?: string } | null }[];
  };
};
const report = (ns: string): Report => JSON.parse(inNs(ns, [tools.weave[0]!, "report"]).stdout);
const ping = (from: LabPod, to: LabPod, extra: string[] = []) =>
  inNs(podNetns(from), ["ping", "-c", "1", "-W", "1", ...extra, to.ip]).code === 0;

describe.skipIf(!canRunHost || !haveTools)("encrypted datapath on a 3-node lab", () => {
  let s: LabState;
  const name = uniqueName("e");
  const pids = new Set<number>();
  const nodeIps = () => new Set(mustReadLab(name).nodes.map((n) => n.ip));

  beforeAll(async () => {
    s = await labUp(name, 3, 2, tools, { password: new TextEncoder().encode(randomBytes(24).toString("base64")) });
  }, 180_000);
  afterAll(async () => {
    for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  /**
   * tcpdump in the underlay (by pid) until stop(): the raw bytes and the packets between
   * nodes. On every interface: br0 itself sees only what is for the bridge's own address,
   * not what it forwards from port to port (node to node).
   */
  async function capture() {
    const file = join("/run/weave-lab", name, `br0-${Date.now()}.pcap`);
    const p = Bun.spawn(
      ["nsenter", `--net=${netnsPath(s.underlay)}`, "tcpdump", "-Z", "root", "-U", "-n", "-i", "any", "-w", file],
      { stdout: "ignore", stderr: "pipe" },
    );
    pids.add(p.pid);
    await untilSaid(p.stderr, "listening on", "tcpdump on br0");
    // "listening on" comes a moment before packets are really seen
    await Bun.sleep(1000);
    return {
      stop: async () => {
        await Bun.sleep(1000);
        p.kill("SIGTERM");
        await p.exited;
        pids.delete(p.pid);
        const text = Bun.spawnSync(["tcpdump", "-r", file, "-n", "-q"], { stdout: "pipe", stderr: "ignore" });
        const ips = nodeIps();
        const between = new Set<string>();
        let packets = 0;
        for (const line of text.stdout.toString().split("\n")) {
          const m = /IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): (UDP|tcp)/.exec(line);
          if (!m || !ips.has(m[1]!) || !ips.has(m[3]!)) continue;
          packets++;
          const proto = m[5] === "UDP" ? "udp" : "tcp";
          const ports = [Number(m[2]), Number(m[4])];
          const service = ports.includes(6785) && proto === "udp" ? 6785 : Math.min(...ports);
          between.add(`${proto} ${service}`);
        }
        return { raw: readFileSync(file), between, packets };
      },
    };
  }

  /** A TCP listener in `pod` that prints what it receives (a Bun one-liner; lab pods run nothing). */
  function listen(pod: LabPod, port: number) {
    const script = `Bun.listen({hostname:"0.0.0.0",port:${port},socket:{data(_s,d){process.stdout.write(d)},close(){process.exit(0)}}});console.error("listening")`;
    const p = Bun.spawn(["nsenter", `--net=${netnsPath(podNetns(pod))}`, process.execPath, "-e", script], {
      stdout: "pipe",
      stderr: "pipe",
    });
    pids.add(p.pid);
    return p;
  }

  /** MARKER over TCP from pod `a` to a listener in `b` on `port`, then 5 pings padded with PAD; returns what `b` received. */
  async function sendMarkerAndPings(a: LabPod, b: LabPod, port: number): Promise<string> {
    const l = listen(b, port);
    await untilSaid(l.stderr, "listening", "listener");
    const sent = inNs(podNetns(a), [
      "bash",
      "-c",
      `exec 3<>/dev/tcp/${b.ip}/${port} && printf '%s' "$1" >&3 && sleep 0.3`,
      "_",
      MARKER,
    ]);
    expect(sent.code).toBe(0);
    for (let i = 0; i < 5; i++) expect(ping(a, b, ["-p", PAD, "-s", "64"])).toBe(true);
    l.kill("SIGTERM");
    const got = await new Response(l.stdout).text();
    await l.exited;
    pids.delete(l.pid);
    return got;
  }

  test("every pod pings every other pod, and every connection says encrypted through wireguard-go", () => {
    expect(pingMatrix(s).filter((p) => !p.ok)).toEqual([]);
    for (const n of s.nodes) {
      const r = report(n.netns).Router;
      expect(r.Encryption).toBe(true);
      const established = r.Connections.filter((c) => c.State === "established");
      expect(established.length).toBe(2);
      for (const c of established) expect(c.Attrs).toMatchObject({ encrypted: true, wireguard: "userspace" });
      expect(inNs(n.netns, ["ip", "-d", "link", "show", "vxlan-6784"]).stdout).toContain("local 246.18.0.");
    }
  });

  test("the underlay carries neither payload, and between nodes only UDP 6785 and TCP 6783", async () => {
    const [a, b] = [s.pods.find((p) => p.node === s.nodes[0]!.name)!, s.pods.find((p) => p.node === s.nodes[1]!.name)!];
    const cap = await capture();
    const got = await sendMarkerAndPings(a, b, 7777);
    expect(got).toBe(MARKER); // it did cross
    const { raw, between, packets } = await cap.stop();
    expect(packets).toBeGreaterThan(0);
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);
    expect(raw.includes(PAD_TEXT)).toBe(false);
    expect([...between].sort()).toEqual(["tcp 6783", "udp 6785"]);
  }, 30_000);

  test("UDP 6785 dropped between two nodes: the sleeve carries their pods' traffic sealed, then WireGuard again", async () => {
    const [n1, n2] = [s.nodes[0]!, s.nodes[1]!];
    const [a, b] = [s.pods.find((p) => p.node === n1.name)!, s.pods.find((p) => p.node === n2.name)!];
    type Paths = { NickName: string; Path: string; Reason?: string }[];
    const pathTo = (from: string, to: string) =>
      (report(from).Router as unknown as { DataPaths: Paths }).DataPaths.find((d) => d.NickName === to);
    labBlock(name, n1.name, n2.name, { udp: 6785 }, true);
    try {
      expect(await eventually(() => pathTo(n1.netns, n2.name)?.Path === "sleeve", 10_000)).toBe(true);
      expect(pathTo(n1.netns, n2.name)?.Reason).toContain("UDP 6785 (WireGuard) does not cross");
      expect(await eventually(() => ping(a, b), 10_000)).toBe(true);
      const cap = await capture();
      const got = await sendMarkerAndPings(a, b, 7778);
      expect(got).toBe(MARKER);
      const { raw, between } = await cap.stop();
      // the pods' traffic crossed in the sleeve's sealed frames: neither payload on the underlay
      expect(raw.includes(Buffer.from(MARKER))).toBe(false);
      expect(raw.includes(PAD_TEXT)).toBe(false);
      expect(between.has("udp 6783")).toBe(true);
    } finally {
      labBlock(name, n1.name, n2.name, { udp: 6785 }, false);
    }
    expect(await eventually(() => pathTo(n1.netns, n2.name)?.Path === "fastdp", 30_000)).toBe(true);
    expect(ping(a, b)).toBe(true);
  }, 60_000);

  test("a node with another password joins nothing and reaches no pod", async () => {
    const bad = await labNodeAdd(name, tools, { password: new TextEncoder().encode("not the lab's password") });
    try {
      expect(bad.refused).toBe(true);
      const log = join(bad.dataDir, "agent.log");
      expect(await eventually(() => /: refused/.test(readFileSync(log, "utf8")))).toBe(true);
      await Bun.sleep(3000);
      const views = meshViews(tools, mustReadLab(name));
      for (const v of views) {
        if (v.node === bad.name) expect(v.reachable).toBe(1);
        else {
          expect(v.reachable).toBe(3);
          expect(v.peers.some((p) => p.nickname === bad.name && p.reachable)).toBe(false);
        }
      }
      for (const p of s.pods) expect(inNs(bad.netns, ["ping", "-c", "1", "-W", "1", p.ip]).code).not.toBe(0);
      // no node gave it a WireGuard peer: its key never reached them over the mesh
      const badKey = keyToBase64(
        publicKeyOf(keyFromBase64(readFileSync(join(bad.dataDir, "wireguard.key"), "utf8").trim())),
      );
      for (const n of s.nodes) {
        const dev = await uapiGet(join(wgSocketDir(n), "weave-wg.sock"));
        expect(dev.peers.length).toBe(2);
        expect(dev.peers.map((p) => p.publicKey)).not.toContain(badKey);
      }
    } finally {
      await labNodeRemove(name, bad.name);
    }
  }, 60_000);

  /** A ping every 50 ms from a to b for `ms`, with the pad; resolves to the seconds of each reply. */
  function pingRun(a: LabPod, b: LabPod, ms: number) {
    const p = Bun.spawn(
      [
        "nsenter",
        `--net=${netnsPath(podNetns(a))}`,
        "ping",
        "-D",
        "-i",
        "0.05",
        "-W",
        "1",
        "-w",
        String(Math.ceil(ms / 1000)),
        "-p",
        PAD,
        b.ip,
      ],
      { stdout: "pipe", stderr: "ignore" },
    );
    pids.add(p.pid);
    return (async () => {
      const out = await new Response(p.stdout).text();
      await p.exited;
      pids.delete(p.pid);
      return [...out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]) * 1000);
    })();
  }

  const wgPid = (node: string) => {
    const f = join(wgSocketDir(findNode(mustReadLab(name), node)), "weave-wg.pid");
    return Number(readFileSync(f, "utf8").trim());
  };

  test("kill -9 wireguard-go under a running ping: nothing in the clear, traffic back within 10 s", async () => {
    const n2 = s.nodes[1]!;
    const [a, b] = [s.pods.find((p) => p.node === s.nodes[0]!.name)!, s.pods.find((p) => p.node === n2.name)!];
    const before = failClosedCounters(netnsPath(n2.netns));
    expect(before).toBeDefined();
    const cap = await capture();
    const replies = pingRun(a, b, 14_000);
    await Bun.sleep(1500);
    const pid = wgPid(n2.name);
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    await until(() => pidAlive(wgPid(n2.name)) && wgPid(n2.name) !== pid, 10_000, 50, "wireguard-go not restarted");
    const times = await replies;
    const { raw, between, packets } = await cap.stop();
    expect(packets).toBeGreaterThan(0);
    expect(between.has("udp 6785")).toBe(true);
    const after = times.filter((t) => t > killedAt);
    expect(after.length).toBeGreaterThan(0);
    expect(after[0]! - killedAt).toBeLessThan(10_000);
    expect(raw.includes(PAD_TEXT)).toBe(false);
    expect(between.has("udp 6784")).toBe(false);
    expect([...between].every((x) => x === "udp 6785" || x === "tcp 6783")).toBe(true);
    // the table is still there (counters may have counted what it kept in)
    expect(failClosedCounters(netnsPath(n2.netns))).toBeDefined();
  }, 40_000);

  test("kill -9 the agent under a running ping: nothing in the clear, traffic back within 10 s of its restart", async () => {
    const n2 = findNode(mustReadLab(name), s.nodes[1]!.name);
    const [a, b] = [s.pods.find((p) => p.node === s.nodes[0]!.name)!, s.pods.find((p) => p.node === n2.name)!];
    const cap = await capture();
    const replies = pingRun(a, b, 16_000);
    await Bun.sleep(1000);
    const wg = wgPid(n2.name);
    process.kill(n2.agentPid, "SIGKILL");
    await until(() => !pidAlive(n2.agentPid), 5000, 20, "agent not dead");
    await Bun.sleep(2000);
    const restartedAt = Date.now();
    await labAgent(name, "start", n2.name, tools);
    const times = await replies;
    const { raw, between, packets } = await cap.stop();
    expect(packets).toBeGreaterThan(0);
    expect([...between].every((x) => x === "udp 6785" || x === "tcp 6783")).toBe(true);
    // wireguard-go outlived the agent and was adopted, not restarted
    expect(wgPid(n2.name)).toBe(wg);
    expect(pidAlive(wg)).toBe(true);
    expect(times.filter((t) => t > restartedAt).length).toBeGreaterThan(0);
    expect(times.filter((t) => t > restartedAt)[0]! - restartedAt).toBeLessThan(10_000);
    expect(raw.includes(PAD_TEXT)).toBe(false);
    expect(between.has("udp 6784")).toBe(false);
    const log = readFileSync(join(n2.dataDir, "agent.log"), "utf8");
    expect(log).toContain("adopted the running wireguard-go");
  }, 60_000);
});
