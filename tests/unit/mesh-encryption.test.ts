/**
 * Mesh routers with WEAVE_PASSWORD over the in-memory network: peers sharing the
 * password converge over encrypted connections; a peer with another password, or none,
 * is refused with a line on both sides, and the others never notice.
 */
import { describe, expect, test } from "bun:test";
import { Router, type RouterOptions } from "../../net/mesh/router.ts";
import { meshPsk } from "../../net/crypto/password.ts";
import { encodeFrame, FrameType, preamble } from "../../net/mesh/frame.ts";
import { nameFromSeed } from "../../net/mesh/peer-name.ts";
import { MemNet, VirtualClock } from "../support/mem-net.ts";
import { Agent } from "../../net/agent/agent.ts";
import { report, statusText, connectionsText } from "../../net/agent/report.ts";
import { parseCidr } from "../../net/cidr.ts";
import { FakeWorld, memoryStore } from "../support/fake-host.ts";

const RANGE = "10.32.0.0/12";
const pskA = meshPsk(new TextEncoder().encode("a long and shared cluster password"), RANGE);
const pskB = meshPsk(new TextEncoder().encode("another cluster's password"), RANGE);

const addr = (i: number) => `10.0.0.${i}:6783`;

function world() {
  const clock = new VirtualClock();
  const net = new MemNet(clock);
  const logs: string[] = [];
  const routers = new Map<number, Router>();
  const add = (i: number, targets: number[], o: Partial<RouterOptions> = {}) => {
    const r = new Router({
      name: nameFromSeed(Bun.hash(`enc-${i}`).toString(16).padStart(12, "0")),
      nickname: `n${i}`,
      listen: addr(i),
      transport: net.transport(addr(i)),
      sched: clock,
      log: (m) => logs.push(`n${i}: ${m}`),
      ...o,
    });
    r.start();
    r.addTargets(targets.map(addr));
    routers.set(i, r);
    return r;
  };
  const reachable = (i: number) => [...routers.get(i)!.topology.reachable()].sort();
  const names = (...is: number[]) => is.map((i) => routers.get(i)!.name).sort();
  const linesOf = (i: number, pattern: RegExp) => logs.filter((l) => l.startsWith(`n${i}: `) && pattern.test(l));
  return { clock, net, logs, routers, add, reachable, names, linesOf };
}

describe("an encrypted mesh", () => {
  test("three peers with the password converge; another password and no password are refused on both sides", async () => {
    const w = world();
    w.add(1, [4, 5], { psk: pskA });
    w.add(2, [1], { psk: pskA });
    w.add(3, [2], { psk: pskA });
    w.add(4, [1, 2], { psk: pskB });
    w.add(5, [1]);
    await w.clock.run(10_000);

    for (const i of [1, 2, 3]) expect(w.reachable(i)).toEqual(w.names(1, 2, 3));
    expect(w.reachable(4)).toEqual(w.names(4));
    expect(w.reachable(5)).toEqual(w.names(5));
    for (const i of [1, 2, 3]) {
      const r = w.routers.get(i)!;
      expect(r.encrypted).toBe(true);
      expect(
        r
          .connections()
          .filter((c) => c.state === "established")
          .every((c) => c.encrypted),
      ).toBe(true);
    }

    // Another password: n4 dialled n1 and n2, n1 dialled n4; whoever listened saw the
    // last message fail, whoever dialled saw the hang-up.
    const wrong = /handshake with .* failed: wrong password or not a weave peer/;
    expect(w.linesOf(1, wrong).some((l) => l.includes("its last handshake message did not open"))).toBe(true);
    expect(w.linesOf(1, wrong).some((l) => l.includes("it hung up after our last handshake message"))).toBe(true);
    expect(w.linesOf(2, wrong).length).toBeGreaterThan(0);
    expect(w.linesOf(4, wrong).some((l) => l.includes("10.0.0.1:6783"))).toBe(true);
    expect(w.linesOf(4, wrong).some((l) => l.includes("its last handshake message did not open"))).toBe(true);

    // No password: both ends say so, from their side.
    expect(w.linesOf(1, /peer at 10\.0\.0\.5:6783 has no password: refused/).length).toBeGreaterThan(0);
    expect(w.linesOf(5, /peer at 10\.0\.0\.1:6783 has a password and we have none: refused/).length).toBeGreaterThan(0);

    // What `weave status connections` shows for a refused target, between its retries.
    const failedInfo = async (target: number) => {
      for (let step = 0; step < 200; step++) {
        const c = w.routers
          .get(1)!
          .connections()
          .find((x) => x.address === addr(target) && x.state === "failed");
        if (c) return c.info;
        await w.clock.run(100);
      }
    };
    expect(await failedInfo(5)).toBe("peer at 10.0.0.5:6783 has no password: refused");
    expect(await failedInfo(4)).toContain("wrong password or not a weave peer");

    // The refused keep trying, with backoff; the three never lose a connection meanwhile.
    await w.clock.run(120_000);
    for (const i of [1, 2, 3]) expect(w.reachable(i)).toEqual(w.names(1, 2, 3));
    expect(w.logs.filter((l) => /^n[123]: connection to .* lost/.test(l))).toEqual([]);
    expect(w.logs.some((l) => l.includes("a long and shared") || l.includes("another cluster"))).toBe(false);
  });

  test("two peers dialling each other at once keep one encrypted connection, and blame no password", async () => {
    const w = world();
    const a = w.add(1, [2], { psk: pskA });
    const b = w.add(2, [1], { psk: pskA });
    await w.clock.run(5_000);
    expect(a.established().length).toBe(1);
    expect(b.established().length).toBe(1);
    expect(w.logs.filter((l) => /password|refused/.test(l))).toEqual([]);
  });

  test("a chain of 10 encrypted peers converges with the same routes everywhere", async () => {
    const w = world();
    for (let i = 1; i <= 10; i++) w.add(i, i > 1 ? [i - 1] : [], { psk: pskA });
    await w.clock.run(15_000);
    const all = w.names(...Array.from({ length: 10 }, (_, i) => i + 1));
    for (let i = 1; i <= 10; i++) expect(w.reachable(i)).toEqual(all);
    const routes = [...w.routers.values()].map((r) => JSON.stringify([...r.topology.routes(all[0])].sort()));
    expect(new Set(routes).size).toBe(1);
  });

  test("garbage in the handshake, or a plaintext hello, drops that connection only", async () => {
    const w = world();
    w.add(1, [], { psk: pskA });
    w.add(2, [1], { psk: pskA });
    await w.clock.run(3_000);
    const t = w.net.transport("10.9.9.9:1");
    const mode1 = encodeFrame(FrameType.Mode, Uint8Array.of(1));
    for (const junk of [
      new Uint8Array([...preamble(), ...mode1, ...encodeFrame(FrameType.Noise, new Uint8Array(31))]),
      new Uint8Array([...preamble(), ...mode1, ...encodeFrame(FrameType.Hello, '{"name":"x"}')]),
      new Uint8Array([...preamble(1, 1), ...encodeFrame(FrameType.Hello, '{"name":"x"}')]),
    ]) {
      const l = await t.dial(addr(1));
      let closed = false;
      l.onClose(() => (closed = true));
      l.onData(() => {});
      l.send(junk);
      await w.clock.run(100);
      expect(closed).toBe(true);
    }
    expect(w.reachable(1)).toEqual(w.names(1, 2));
    expect(w.linesOf(1, /10\.9\.9\.9:1/)).toEqual([
      "n1: handshake with 10.9.9.9:1 failed: handshake message too short for an ephemeral key: not a weave peer: refused",
      "n1: dropping connection from 10.9.9.9:1: frame 0x48 during the handshake",
      "n1: peer at 10.9.9.9:1 speaks only mesh protocol 1, which cannot encrypt, and we have a password: refused",
    ]);
  });

  test("the agent reports it: Router.Encryption, Attrs.encrypted, `Encryption: enabled`", async () => {
    const clock = new VirtualClock();
    const net = new MemNet(clock);
    const ip = (i: number) => `198.18.0.${10 + i}`;
    const agent = (i: number, meshPsk?: Uint8Array) => {
      const world = new FakeWorld();
      const eth0 = { index: 99, name: "eth0", mtu: 1500, mac: "02:aa:00:00:00:01", up: true, group: 0 };
      world.ns("root").links.set("eth0", eth0);
      const a = new Agent(
        {
          range: parseCidr("10.40.0.0/24"),
          bridge: "weave",
          nickname: `n${i}`,
          dataDir: `/d${i}`,
          peers: [1, 2].filter((j) => j !== i).map(ip),
          advertise: ip(i),
          meshListen: `${ip(i)}:6783`,
          meshPsk,
        },
        {
          host: world.host(),
          openHost: (ns) => world.host(ns),
          checkNetns: () => ({ ok: true }),
          store: memoryStore(),
          log: () => {},
          defer: () => {},
          transport: net.transport(`${ip(i)}:6783`),
          sched: clock,
          machineId: `m${i}`,
        },
      );
      a.start();
      return a;
    };
    const a1 = agent(1, pskA);
    const a2 = agent(2, pskA);
    await clock.run(5_000);
    for (const a of [a1, a2]) {
      const router = report(a).Router as {
        Encryption: boolean;
        Connections: { Attrs: { encrypted: boolean } | null }[];
      };
      expect(router.Encryption).toBe(true);
      expect(router.Connections.map((c) => c.Attrs?.encrypted)).toEqual([true]);
      expect(statusText(a)).toMatch(/ Encryption: enabled\n/);
      expect(connectionsText(a)).toContain("established encrypted");
    }
    a1.stop();
    a2.stop();
    const plain = agent(3);
    expect((report(plain).Router as { Encryption: boolean }).Encryption).toBe(false);
    expect(statusText(plain)).toMatch(/ Encryption: disabled\n/);
    plain.stop();
  });
});
