/**
 * Mesh routers over an in-memory network and a virtual clock: they find each other,
 * agree on the topology and the routes, survive joins, leaves, deaths and garbage.
 */
import { describe, expect, test } from "bun:test";
import { Router, type RouterOptions } from "../../net/mesh/router.ts";
import { decodeEntry, encodeEntry, Topology, TopologyError } from "../../net/mesh/topology.ts";
import { encodeFrame, FrameType, preamble, ProtocolError } from "../../net/mesh/frame.ts";
import { Channel } from "../../net/mesh/channel.ts";
import { nameFromSeed } from "../../net/mesh/peer-name.ts";
import { MemNet, VirtualClock } from "../support/mem-net.ts";

function rng(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

function world() {
  const clock = new VirtualClock();
  const net = new MemNet(clock);
  const logs: string[] = [];
  const routers = new Map<string, Router>();
  const add = (i: number, targets: number[] = [], o: Partial<RouterOptions> = {}) => {
    const addr = `10.0.${i >> 8}.${i & 255}:6783`;
    const r = new Router({
      name: nameFromSeed(Bun.hash(String(i)).toString(16).padStart(12, "0")),
      nickname: `n${i}`,
      listen: addr,
      transport: net.transport(addr),
      sched: clock,
      log: (m) => logs.push(`n${i}: ${m}`),
      ...o,
    });
    r.start();
    r.addTargets(targets.map((t) => `10.0.${t >> 8}.${t & 255}:6783`));
    routers.set(addr, r);
    return r;
  };
  const agree = () => {
    const live = [...routers.values()];
    const names = live.map((r) => r.name).sort();
    for (const r of live) {
      const reach = [...r.topology.reachable()].sort();
      if (JSON.stringify(reach) !== JSON.stringify(names)) return false;
    }
    // every peer computes the same routes from every source
    for (const src of names) {
      const views = live.map((r) => JSON.stringify([...r.topology.routes(src)].sort()));
      if (new Set(views).size !== 1) return false;
    }
    return true;
  };
  return { clock, net, logs, routers, add, agree };
}

describe("topology entries", () => {
  const e = {
    name: "02:00:00:00:00:01",
    nickname: "a",
    uid: "u1",
    version: 5,
    addresses: ["198.18.0.11:6783"],
    connections: ["02:00:00:00:00:02"],
    pods: [169869314],
  };
  test("round-trip as one line", () => {
    expect(decodeEntry(encodeEntry(e))).toEqual(e);
  });
  test("garbage lines are refused", () => {
    for (const bad of [
      "",
      "x",
      "x 1",
      "x y {}",
      "x 1 {",
      "x 1 {}",
      'x 1 {"k":1,"u":"u","a":[],"c":[],"p":[]}',
      'x 1 {"k":"a","u":"u","a":[],"c":[],"p":[-1]}',
    ]) {
      expect(() => decodeEntry(bad)).toThrow(TopologyError);
    }
  });
  test("merge keeps the higher version and returns only news", () => {
    const t = new Topology("02:00:00:00:00:ff");
    expect(t.merge([encodeEntry(e)]).news.length).toBe(1);
    expect(t.merge([encodeEntry(e)]).news).toEqual([]);
    expect(t.merge([encodeEntry({ ...e, version: 4 })]).news).toEqual([]);
    expect(t.merge([encodeEntry({ ...e, version: 6, nickname: "b" })]).news.length).toBe(1);
    expect(t.get(e.name)!.nickname).toBe("b");
  });
  test("only symmetric connections make a path", () => {
    const [a, b, c] = ["02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"];
    const t = new Topology(a);
    const mk = (name: string, connections: string[]) =>
      encodeEntry({ name, nickname: name, uid: "u", version: 1, addresses: [], connections, pods: [] });
    t.setOwn(decodeEntry(mk(a, [b])));
    t.merge([mk(b, [a, c]), mk(c, [])]);
    expect([...t.reachable()].sort()).toEqual([a, b]);
    t.merge([mk(c, [b]).replace(" 1 ", " 2 ")]);
    expect(t.routes()).toEqual(
      new Map([
        [a, a],
        [b, b],
        [c, b],
      ]),
    );
  });

  test("an entry line whose name is not a peer name is refused", () => {
    expect(() =>
      new Topology("02:00:00:00:00:0a").merge([
        encodeEntry({ name: "GET", nickname: "x", uid: "u", version: 1, addresses: [], connections: [], pods: [] }),
      ]),
    ).toThrow(TopologyError);
  });
});

describe("frames", () => {
  const channel = () =>
    new Channel({ outbound: false, address: "10.0.0.9:1", versions: { min: 1, max: 2 }, send() {} });
  test("preamble and frames reassemble from any chunking", () => {
    for (const [theirs, modeFrame] of [
      [preamble(1, 1), []],
      [preamble(1, 2), [...encodeFrame(FrameType.Mode, Uint8Array.of(0))]],
    ] as const) {
      const bytes = new Uint8Array([
        ...theirs,
        ...modeFrame,
        ...encodeFrame(FrameType.Hello, "hi"),
        ...encodeFrame(FrameType.Heartbeat),
      ]);
      for (const size of [1, 3, 7, bytes.length]) {
        const c = channel();
        const got: string[] = [];
        let opened = 0;
        for (let i = 0; i < bytes.length; i += size) {
          const r = c.push(bytes.subarray(i, i + size));
          opened += Number(r.opened);
          for (const f of r.frames) got.push(`${f.type}:${f.text()}`);
        }
        expect(got).toEqual([`${FrameType.Hello}:hi`, `${FrameType.Heartbeat}:`]);
        expect(opened).toBe(1);
        expect(c.version).toBe(theirs[7]!);
      }
    }
  });
  test("garbage is a protocol error", () => {
    expect(() => channel().push(new TextEncoder().encode("GET / HTTP/1.1\r\n"))).toThrow(ProtocolError);
    expect(() => channel().push(new Uint8Array([...preamble(1, 1), 0xff, 0xff, 0xff, 0xff]))).toThrow(/outside/);
    expect(() => channel().push(new Uint8Array([...preamble(), ...encodeFrame(FrameType.Hello, "hi")]))).toThrow(
      /before the mode frame/,
    );
  });
});

describe("mesh routers", () => {
  test("a chain of 12 peers converges: everyone knows everyone, same routes everywhere", async () => {
    const w = world();
    for (let i = 0; i < 12; i++) w.add(i, i ? [i - 1] : []);
    await w.clock.run(20_000);
    expect(w.agree()).toBe(true);
    for (const r of w.routers.values()) expect(r.topology.size).toBe(12);
    // with discovery on, the chain becomes a full mesh
    for (const r of w.routers.values()) expect(r.established().length).toBe(11);
  });

  test("without discovery, peers keep only their own targets but still agree", async () => {
    const w = world();
    for (let i = 0; i < 10; i++) w.add(i, i ? [i - 1] : [], { discovery: false });
    await w.clock.run(10_000);
    expect(w.agree()).toBe(true);
    const first = [...w.routers.values()][0]!;
    expect(first.established().length).toBe(1);
    const last = [...w.routers.values()][9]!;
    expect(first.topology.routes().get(last.name)).toBe([...w.routers.values()][1]!.name);
  });

  for (const seed of [1, 2, 3, 4, 5]) {
    test(`random joins and leaves converge (seed ${seed})`, async () => {
      const w = world();
      const rand = rng(seed);
      const alive: number[] = [];
      for (let step = 0; step < 25; step++) {
        if (alive.length > 3 && rand() < 0.3) {
          const i = alive.splice(Math.floor(rand() * alive.length), 1)[0]!;
          const addr = `10.0.0.${i}:6783`;
          w.routers.get(addr)!.stop();
          w.routers.delete(addr);
          w.net.kill(addr);
        } else {
          const i = step + 1;
          const targets = alive.length ? [alive[Math.floor(rand() * alive.length)]!] : [];
          w.add(i, targets, { discovery: rand() < 0.5, forgetAfterMs: 5_000 });
          alive.push(i);
        }
        await w.clock.run(Math.floor(rand() * 3000));
      }
      await w.clock.run(90_000);
      expect(w.agree(), `seed ${seed}: ${w.logs.slice(-5).join("\n")}`).toBe(true);
    });
  }

  test("a dead peer is noticed, routed around, and forgotten; when it returns it is known again", async () => {
    const w = world();
    for (let i = 0; i < 5; i++) w.add(i, i ? [0] : [], { forgetAfterMs: 10_000 });
    await w.clock.run(10_000);
    expect(w.agree()).toBe(true);
    const dead = w.routers.get("10.0.0.3:6783")!;
    dead.stop();
    w.routers.delete("10.0.0.3:6783");
    w.net.kill("10.0.0.3:6783");
    await w.clock.run(3_000);
    for (const r of w.routers.values()) expect(r.topology.reachable().has(dead.name)).toBe(false);
    await w.clock.run(70_000);
    for (const r of w.routers.values()) expect(r.topology.get(dead.name)).toBeUndefined();
    const back = w.add(3, [0]);
    await w.clock.run(10_000);
    expect(back.name).toBe(dead.name);
    expect(w.agree()).toBe(true);
  });

  test("a silent peer (cut cable) is dropped after the heartbeat timeout", async () => {
    const w = world();
    for (let i = 0; i < 3; i++) w.add(i, i ? [0] : [], { deadAfterMs: 5_000 });
    await w.clock.run(5_000);
    w.net.cuts.add("10.0.0.2");
    await w.clock.run(15_000);
    const r0 = w.routers.get("10.0.0.0:6783")!;
    expect(r0.established().map((e) => e.nickname)).toEqual(["n1"]);
    expect(w.logs.some((l) => l.includes("nothing heard"))).toBe(true);
    w.net.cuts.clear();
    await w.clock.run(30_000);
    expect(w.agree()).toBe(true);
  });

  test("two peers dialling each other at once end up with one connection", async () => {
    const w = world();
    const a = w.add(1, [2]);
    const b = w.add(2, [1]);
    await w.clock.run(5_000);
    expect(a.established().length).toBe(1);
    expect(b.established().length).toBe(1);
    expect(a.established()[0]!.outbound).not.toBe(b.established()[0]!.outbound);
  });

  test("a peer on another protocol version is refused, with a log line on both sides", async () => {
    const w = world();
    w.add(1);
    w.add(2, [1], { versions: { min: 3, max: 4 } });
    w.add(3, [1]);
    await w.clock.run(5_000);
    expect(
      [...new Set(w.logs.filter((l) => l.includes("speaks mesh protocol versions")).map((l) => l.slice(0, 3)))].sort(),
    ).toEqual(["n1:", "n2:"]);
    const r1 = w.routers.get("10.0.0.1:6783")!;
    expect(r1.established().map((e) => e.nickname)).toEqual(["n3"]);
    expect(r1.connections().find((c) => c.address === "10.0.0.1:6783")).toBeUndefined();
  });

  test("garbage on a connection drops that connection only", async () => {
    const w = world();
    w.add(1);
    w.add(2, [1]);
    await w.clock.run(3_000);
    const t = w.net.transport("10.9.9.9:1");
    for (const junk of [
      new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
      new Uint8Array([...preamble(), ...encodeFrame(FrameType.Hello, "{nope")]),
      new Uint8Array([
        ...preamble(),
        ...encodeFrame(FrameType.Hello, '{"name":"x","nickname":"x","uid":"x"}'),
        ...encodeFrame(FrameType.Gossip, "x 1 garbage"),
      ]),
    ]) {
      const l = await t.dial("10.0.0.1:6783");
      let closed = false;
      l.onClose(() => (closed = true));
      l.onData(() => {});
      l.send(junk);
      await w.clock.run(100);
      expect(closed).toBe(true);
    }
    const r1 = w.routers.get("10.0.0.1:6783")!;
    expect(r1.established().map((e) => e.nickname)).toEqual(["n2"]);
    expect(r1.topology.size).toBe(2);
    expect(w.logs.filter((l) => l.startsWith("n1: dropping")).length).toBe(3);
  });

  test("a peer that dials itself gives up on that address", async () => {
    const w = world();
    const a = w.add(1, [1, 2]);
    w.add(2);
    await w.clock.run(5_000);
    expect(a.established().map((e) => e.nickname)).toEqual(["n2"]);
  });

  test("pods and addresses travel in the gossip", async () => {
    const w = world();
    const a = w.add(1);
    const b = w.add(2, [1]);
    a.setLocal({ pods: [1, 2, 3] });
    await w.clock.run(2_000);
    expect(b.topology.get(a.name)?.pods, w.logs.join("\n") + JSON.stringify(b.connections())).toEqual([1, 2, 3]);
    a.setLocal({ pods: [2] });
    await w.clock.run(2_000);
    expect(b.topology.get(a.name)!.pods).toEqual([2]);
  });
});
