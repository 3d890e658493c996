/**
 * The encrypted datapath's building blocks on real namespaces: wireguard-go started and
 * supervised by net/host/wireguard-go.ts, configured from the plan of
 * net/encap/wireguard.ts with keys from the data dir and PSKs from a shared secret, VXLAN
 * over the tunnel addresses, the fail-closed table. Three nodes on one underlay bridge:
 * a and b have a pod each and the right secret; c has the wrong one.
 *
 *   <u>u   underlay: bridge br0
 *   <u>a, <u>b, <u>c   nodes: eth0 198.18.200.1/.2/.3, weave-wg, bridge weave + vxlan-6784
 *   <u>pa, <u>pb       pods: eth0 10.32.0.2/12, 10.32.1.2/12 on their node's bridge
 *
 * What it shows: pods ping across; a capture on a's underlay holds only WireGuard (UDP
 * 6785) and never the payload, which the capture inside the tunnel does hold; kill -9 of
 * wireguard-go: the fail-closed rule drops the VXLAN meant for the dead tunnel, nothing
 * leaves in plaintext, the supervisor restarts it and the ping resumes within 10 s; a
 * restarted agent adopts the running wireguard-go; the node with the wrong secret gets
 * nothing through. Namespaces by name and processes by pid are removed even on failure.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { desiredWireguard, encryptedMtus, tunnelAddress, tunnelCidr, WG_NAME } from "../../net/encap/wireguard.ts";
import { VXLAN_PORT } from "../../net/encap/vxlan.ts";
import { openHost, type NetHost } from "../../net/host/host.ts";
import { createNamedNetns, deleteNamedNetns, netnsPath } from "../../net/host/netns.ts";
import { pidAlive } from "../../net/host/process.ts";
import { loadOrCreateWgKey, type WgKeyPair } from "../../net/host/wg-key-file.ts";
import {
  applyFailClosed,
  failClosedCounters,
  failClosedInPlace,
  removeFailClosed,
} from "../../net/host/wg-fail-closed.ts";
import { openWireguard, type WgEvent } from "../../net/host/wireguard.ts";
import { stopLeftoverWireguardGo, WireguardGo } from "../../net/host/wireguard-go.ts";
import { isRoot, uniqueName } from "../support/env.ts";
import { eventually, until, untilSaid } from "../support/wait.ts";

const haveTools = ["wireguard-go", "tcpdump", "nft"].every((t) => Bun.which(t));
if (isRoot && !haveTools) console.warn("wireguard host test skipped: wireguard-go, tcpdump or nft missing (setup.sh)");

const MTU = encryptedMtus({ underlay: 1500 });
const PATTERN = "77656176652d736563726574"; // "weave-secret", ping's -p pad
const sh = (ns: string, cmd: string[]) => {
  const r = Bun.spawnSync(["nsenter", `--net=${netnsPath(ns)}`, ...cmd], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
};
const must = (ns: string, cmd: string[]) => {
  const r = sh(ns, cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${ns}: ${r.out}`);
  return r.out;
};
const ping = (ns: string, ip: string, extra: string[] = []) =>
  sh(ns, ["ping", "-c", "1", "-W", "1", ...extra, ip]).code === 0;

type Node = {
  ns: string;
  underlay: string;
  host: NetHost;
  key: WgKeyPair;
  secret: Uint8Array;
  dev: WireguardGo;
  events: WgEvent[];
  pod?: { ns: string; ip: string };
};

describe.skipIf(!isRoot || !haveTools)("WireGuard datapath on real namespaces (wireguard-go)", () => {
  const u = uniqueName("wg");
  const names = ["u", "a", "b", "c", "pa", "pb"].map((s) => `${u}${s}`);
  const [underNs, aNs, bNs, cNs, paNs, pbNs] = names as [string, string, string, string, string, string];
  const tmp = mkdtempSync(join(tmpdir(), `${u}-`));
  const secret = new Uint8Array(randomBytes(32));
  const nodes: Node[] = [];
  const pids = new Set<number>();
  const hosts: NetHost[] = [];
  const [a, b, c] = [{} as Node, {} as Node, {} as Node];

  function makeNode(n: Node, ns: string, i: number, nodeSecret: Uint8Array, pod?: { ns: string; ip: string }): void {
    createNamedNetns(ns);
    const underlay = `198.18.200.${i + 1}`;
    must(underNs, ["ip", "link", "add", `n${i}`, "type", "veth", "peer", "name", "eth0", "netns", netnsPath(ns)]);
    must(underNs, ["ip", "link", "set", `n${i}`, "master", "br0", "up"]);
    must(ns, ["ip", "link", "set", "eth0", "up"]);
    must(ns, ["ip", "addr", "add", `${underlay}/24`, "dev", "eth0"]);
    // A default route, as every real node has: with weave-wg gone, VXLAN to a tunnel
    // address would leave through it in plaintext if the fail-closed rule did not drop it.
    must(ns, ["ip", "route", "add", "default", "via", "198.18.200.254"]);
    const host = openHost(netnsPath(ns));
    hosts.push(host);
    const events: WgEvent[] = [];
    const dev = openWireguard({
      host,
      netns: netnsPath(ns),
      address: tunnelCidr(underlay),
      mtu: MTU.wireguard,
      socketDir: join(tmp, ns),
      onEvent: (e) => {
        events.push(e);
        if (e.type === "started" && e.pid) pids.add(e.pid);
      },
    });
    if (!(dev instanceof WireguardGo)) throw new Error("expected the userspace implementation on this kernel");
    Object.assign(n, {
      ns,
      underlay,
      host,
      key: loadOrCreateWgKey(join(tmp, ns, "data")),
      secret: nodeSecret,
      dev,
      events,
      pod,
    });
    nodes.push(n);
    applyFailClosed({}, netnsPath(ns));
  }

  function makeVxlan(n: Node): void {
    const br = n.host.addBridge("weave", { mtu: MTU.overlay });
    const vx = n.host.addVxlan({
      name: "vxlan-6784",
      vni: 0x776561,
      port: VXLAN_PORT,
      local: tunnelAddress(n.underlay),
      mtu: MTU.overlay,
      master: br.index,
      learning: false,
    });
    n.host.setLink(vx.index, { up: true });
    for (const o of nodes.filter((o) => o !== n))
      n.host.addFdb({ dev: vx.index, mac: "00:00:00:00:00:00", dst: tunnelAddress(o.underlay) });
    if (!n.pod) return;
    createNamedNetns(n.pod.ns);
    const v = n.host.addVeth({ name: "vethpod", mtu: MTU.overlay, peer: { name: "eth0", netns: netnsPath(n.pod.ns) } });
    n.host.setLink(v.index, { master: br.index, up: true });
    must(n.pod.ns, ["ip", "link", "set", "eth0", "mtu", String(MTU.overlay), "up"]);
    must(n.pod.ns, ["ip", "addr", "add", `${n.pod.ip}/12`, "dev", "eth0"]);
  }

  /** Every node's view: the others as remotes, with the public keys "from the gossip". */
  const sync = (n: Node) => {
    const remotes = nodes
      .filter((o) => o !== n)
      .map((o) => ({ name: o.ns, ip: o.underlay, publicKey: o.key.publicKey }));
    const self = { privateKey: n.key.privateKey, clusterSecret: n.secret, underlay: n.underlay };
    return n.dev.sync(desiredWireguard(self, remotes).want);
  };

  beforeAll(async () => {
    createNamedNetns(underNs);
    must(underNs, ["ip", "link", "add", "br0", "type", "bridge"]);
    must(underNs, ["ip", "link", "set", "br0", "up"]);
    makeNode(a, aNs, 0, secret, { ns: paNs, ip: "10.32.0.2" });
    makeNode(b, bNs, 1, secret, { ns: pbNs, ip: "10.32.1.2" });
    makeNode(c, cNs, 2, new Uint8Array(randomBytes(32)));
    for (const n of nodes) await n.dev.start();
    for (const n of nodes) await sync(n);
    for (const n of nodes) makeVxlan(n);
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) await n.dev?.stop().catch(() => {});
    for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
    for (const h of hosts) h.close();
    for (const ns of names) deleteNamedNetns(ns);
    rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  test("the device: userspace, our address and MTU, the plan applied, nothing left to change", async () => {
    for (const n of [a, b]) {
      const link = n.host.link(WG_NAME)!;
      expect(link).toMatchObject({ mtu: 1440, up: true });
      expect(n.host.addrs(link.index).map((x) => x.cidr)).toEqual([tunnelCidr(n.underlay)]);
      expect(n.dev.impl).toBe("userspace");
      const state = await n.dev.show();
      expect(state.listenPort).toBe(6785);
      expect(state.peers).toHaveLength(2);
      expect((await sync(n)).peers).toEqual([]);
    }
    expect(existsSync(`/var/run/wireguard/${WG_NAME}.sock`)).toBe(false);
    expect(readdirSync(join(tmp, aNs)).sort()).toEqual(["data", `${WG_NAME}.pid`, `${WG_NAME}.sock`]);
  });

  test("pods ping across; the underlay carries WireGuard only, never the payload", async () => {
    await until(() => ping(paNs, b.pod!.ip), 10_000, 100, "pod a -> pod b never answered");
    const under = await capture(aNs, "eth0");
    const inner = await capture(aNs, WG_NAME);
    expect(ping(paNs, b.pod!.ip, ["-p", PATTERN, "-s", "1200"])).toBe(true);
    expect(ping(pbNs, a.pod!.ip, ["-p", PATTERN, "-s", "1362", "-M", "do"])).toBe(true);
    expect(ping(pbNs, a.pod!.ip, ["-s", "1363", "-M", "do"])).toBe(false);
    const [u1, i1] = [await under.stop(), await inner.stop()];
    const needle = Buffer.from(PATTERN, "hex");
    expect(i1.raw.includes(needle)).toBe(true); // the payload is there inside the tunnel...
    expect(u1.raw.includes(needle)).toBe(false); // ...and nowhere on the underlay
    expect(u1.udpPorts.size).toBeGreaterThan(0);
    expect([...u1.udpPorts]).toEqual(["6785>6785"]);
    expect([...i1.udpPorts].some((p) => p.endsWith(`>${VXLAN_PORT}`))).toBe(true);
  });

  test("kill -9 wireguard-go: nothing in plaintext, the supervisor restarts it, pings resume within 10 s", async () => {
    const before = failClosedCounters(netnsPath(aNs))!;
    const under = await capture(aNs, "eth0");
    const flood = Bun.spawn(["nsenter", `--net=${netnsPath(paNs)}`, "ping", "-i", "0.01", "-W", "1", b.pod!.ip], {
      stdout: "ignore",
      stderr: "ignore",
    });
    pids.add(flood.pid);
    try {
      await Bun.sleep(300);
      const old = a.dev.processId;
      process.kill(old, "SIGKILL");
      const killedAt = Date.now();
      await until(() => a.events.some((e) => e.type === "exited" && e.pid === old), 5000, 10, "no exit event");
      await until(() => a.dev.processId !== 0 && a.dev.processId !== old, 10_000, 20, "not restarted");
      await until(() => ping(paNs, b.pod!.ip), 10_000, 50, "the ping did not resume within 10 s");
      const resumedMs = Date.now() - killedAt;
      console.log(`wireguard-go killed: restarted and pinging again after ${resumedMs} ms`);
      expect(resumedMs).toBeLessThan(10_000);
    } finally {
      flood.kill("SIGKILL");
      await flood.exited;
      pids.delete(flood.pid);
    }
    const seen = await under.stop();
    expect([...seen.udpPorts].filter((p) => p !== "6785>6785")).toEqual([]);
    expect(seen.raw.includes(Buffer.from(PATTERN, "hex"))).toBe(false);
    // The kernel refused those packets before the rule saw them: their source, the tunnel
    // address, went with the TUN. The rule is for whatever else would route VXLAN out.
    expect(failClosedCounters(netnsPath(aNs))!.droppedOut).toBeGreaterThanOrEqual(before.droppedOut);
    expect(failClosedInPlace({}, netnsPath(aNs))).toBe(true);
    expect(a.events.map((e) => e.type)).toContain("configured");
  }, 30_000);

  test("fail closed, out: VXLAN routed to the underlay (a stale entry) is dropped and counted", async () => {
    const vx = a.host.link("vxlan-6784")!;
    const stale = { dev: vx.index, mac: "00:00:00:00:00:00", dst: b.underlay };
    const trial = async () => {
      const before = failClosedCounters(netnsPath(aNs))?.droppedOut ?? 0;
      const under = await capture(aNs, "eth0");
      a.host.addFdb(stale);
      try {
        ping(paNs, "10.32.9.9"); // nobody has it: the pod's ARP goes to every flood entry
      } finally {
        a.host.delFdb(stale);
      }
      const ports = [...(await under.stop()).udpPorts];
      return { dropped: (failClosedCounters(netnsPath(aNs))?.droppedOut ?? 0) - before, ports };
    };
    const closed = await trial();
    expect(closed.dropped).toBeGreaterThan(0);
    expect(closed.ports.filter((p) => p !== "6785>6785")).toEqual([]);
    // The control: without the table the same entry puts plain VXLAN on the underlay.
    removeFailClosed(netnsPath(aNs));
    try {
      const open = await trial();
      expect(open.ports.some((p) => p.endsWith(`>${VXLAN_PORT}`))).toBe(true);
    } finally {
      applyFailClosed({}, netnsPath(aNs));
    }
  });

  test("fail closed, in: plain VXLAN from the underlay is dropped and counted, never delivered", async () => {
    // c plays someone on the underlay: its own table and VXLAN go, a plain VXLAN device comes.
    removeFailClosed(netnsPath(cNs));
    c.host.delLink("vxlan-6784");
    const atk = c.host.addVxlan({ name: "vxatk", vni: 0x776561, port: VXLAN_PORT, local: c.underlay, mtu: 1450 });
    c.host.addFdb({ dev: atk.index, mac: "00:00:00:00:00:00", dst: b.underlay });
    c.host.addAddr(atk.index, "10.32.5.5/12");
    const before = failClosedCounters(netnsPath(bNs))!;
    const podLearnedC = () => must(pbNs, ["ip", "neigh", "show", "10.32.5.5"]).trim() !== "";
    try {
      expect(ping(cNs, b.pod!.ip, ["-c", "3", "-i", "0.5"])).toBe(false);
      expect(failClosedCounters(netnsPath(bNs))!.droppedIn).toBeGreaterThan(before.droppedIn);
      expect(podLearnedC()).toBe(false); // c's ARP never reached pod b
      // The control: without b's table the same ARP is delivered (the pod learns c).
      removeFailClosed(netnsPath(bNs));
      const delivered = () => {
        ping(cNs, b.pod!.ip);
        return podLearnedC();
      };
      expect(await eventually(delivered, 5000)).toBe(true);
    } finally {
      applyFailClosed({}, netnsPath(bNs));
      c.host.delLink("vxatk");
      applyFailClosed({}, netnsPath(cNs));
    }
  });

  test("a restarted agent adopts the running wireguard-go; its later death is noticed too", async () => {
    const running = a.dev.processId;
    a.dev.detach();
    const events: WgEvent[] = [];
    const again = new WireguardGo({
      host: a.host,
      netns: netnsPath(aNs),
      address: tunnelCidr(a.underlay),
      mtu: MTU.wireguard,
      socketDir: join(tmp, aNs),
      onEvent: (e) => {
        events.push(e);
        if (e.type === "started" && e.pid) pids.add(e.pid);
      },
    });
    a.dev = again;
    await again.start();
    expect(events[0]).toEqual({ type: "adopted", pid: running });
    expect((await sync(a)).peers).toEqual([]);
    expect(ping(paNs, b.pod!.ip)).toBe(true);
    process.kill(running, "SIGKILL");
    await until(() => again.processId !== 0 && again.processId !== running, 10_000, 20, "not restarted");
    await until(() => ping(paNs, b.pod!.ip), 10_000, 50, "the ping did not resume");
  }, 30_000);

  test("a node with the wrong secret completes no handshake and gets nothing through", async () => {
    expect(ping(cNs, tunnelAddress(b.underlay))).toBe(false);
    expect(ping(cNs, tunnelAddress(b.underlay))).toBe(false);
    const atC = await c.dev.show();
    expect(atC.peers.every((p) => p.lastHandshakeSec === 0)).toBe(true);
    expect(ping(aNs, tunnelAddress(b.underlay))).toBe(true);
    const atB = await b.dev.show();
    const fromA = atB.peers.find((p) => p.publicKey === a.key.publicKey)!;
    expect(fromA.lastHandshakeSec).toBeGreaterThan(0);
  }, 20_000);

  test("stop ends wireguard-go by pid and leaves no socket", async () => {
    const pid = c.dev.processId;
    await c.dev.stop();
    expect(pidAlive(pid)).toBe(false);
    expect(existsSync(c.dev.socketPath)).toBe(false);
    expect(existsSync(c.dev.pidPath)).toBe(false);
    expect(c.host.link(WG_NAME)).toBeUndefined();
  });

  test("a leftover wireguard-go whose agent is gone is ended from its pid file", async () => {
    const pid = b.dev.processId;
    b.dev.detach();
    expect(await stopLeftoverWireguardGo({ socketDir: join(tmp, bNs) })).toBe(true);
    expect(pidAlive(pid)).toBe(false);
    expect(readdirSync(join(tmp, bNs))).toEqual(["data"]);
    expect(await stopLeftoverWireguardGo({ socketDir: join(tmp, bNs) })).toBe(false);
  });

  /** tcpdump on `dev` in `ns` (pid-tracked) until stop(): the raw file and the UDP ports seen. */
  async function capture(ns: string, dev: string) {
    const file = join(tmp, `${ns}-${dev}-${Date.now()}.pcap`);
    const p = Bun.spawn(
      ["nsenter", `--net=${netnsPath(ns)}`, "tcpdump", "-Z", "root", "-U", "-n", "-i", dev, "-w", file],
      {
        stdout: "ignore",
        stderr: "pipe",
      },
    );
    pids.add(p.pid);
    await untilSaid(p.stderr, "listening on", `tcpdump on ${dev} in ${ns}`);
    return {
      stop: async () => {
        await Bun.sleep(200);
        p.kill("SIGTERM");
        await p.exited;
        pids.delete(p.pid);
        const text = Bun.spawnSync(["tcpdump", "-r", file, "-n", "-q"], { stdout: "pipe", stderr: "ignore" });
        const udpPorts = new Set<string>();
        for (const line of text.stdout.toString().split("\n")) {
          const m = /IP6? \S+?\.(\d+) > \S+?\.(\d+): UDP/.exec(line);
          if (m) udpPorts.add(`${m[1]}>${m[2]}`);
        }
        return { raw: readFileSync(file), udpPorts };
      },
    };
  }
});
