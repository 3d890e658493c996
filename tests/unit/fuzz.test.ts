/**
 * Bounded mutational fuzzers (fixed seeds, thousands of inputs each) for what reads
 * untrusted bytes: the mesh's receive path (preamble, mode, Noise handshake, frames,
 * gossip), the CNI configuration and environment parsers, and the agent's API. Each input
 * is a valid sample mutated (bits flipped, bytes replaced, inserted, deleted, cut, runs
 * repeated, samples spliced). Nothing may crash or hang: the parsers throw only their
 * typed errors, a fuzzed mesh connection is dropped (or times out) while the real peers
 * stay converged, and the API answers every request with a status and keeps serving.
 */
import { describe, expect, test } from "bun:test";
import { Agent } from "../../net/agent/agent.ts";
import { handleApi } from "../../net/agent/api.ts";
import { parseCidr } from "../../net/cidr.ts";
import { parseEnv, parseNetConf } from "../../net/cni/config.ts";
import { CniError } from "../../net/cni/errors.ts";
import { meshPsk } from "../../net/crypto/password.ts";
import { encodeFrame, FrameType, preamble } from "../../net/mesh/frame.ts";
import { nameFromSeed } from "../../net/mesh/peer-name.ts";
import { Router } from "../../net/mesh/router.ts";
import { FakeWorld, memoryStore } from "../support/fake-host.ts";
import { MemNet, VirtualClock } from "../support/mem-net.ts";

/** A small deterministic PRNG (xorshift32). */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]) => xs[int(xs.length)]! };
}

type Rand = ReturnType<typeof prng>;

/** One to four mutations of `sample`, sometimes spliced with another sample. */
function mutate(r: Rand, sample: Uint8Array, others: readonly Uint8Array[]): Uint8Array {
  let b: Uint8Array = Uint8Array.from(sample);
  const rounds = 1 + r.int(4);
  for (let i = 0; i < rounds; i++) {
    const at = b.length ? r.int(b.length) : 0;
    switch (r.int(7)) {
      case 0:
        if (b.length) b[at] = b[at]! ^ (1 << r.int(8));
        break;
      case 1:
        if (b.length) b[at] = r.pick([0, 1, 0x7f, 0x80, 0xff, 0x22, 0x7b, 0x7d, r.int(256)]);
        break;
      case 2:
        b = concat(
          b.subarray(0, at),
          Uint8Array.from({ length: 1 + r.int(8) }, () => r.int(256)),
          b.subarray(at),
        );
        break;
      case 3:
        b = concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(16))));
        break;
      case 4:
        b = b.subarray(0, at);
        break;
      case 5:
        b = concat(b.subarray(0, at), b.subarray(at, at + 1 + r.int(32)), b.subarray(at));
        break;
      default: {
        const other = r.pick(others);
        b = concat(b.subarray(0, at), other.subarray(r.int(other.length + 1)));
      }
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const text = (s: string) => new TextEncoder().encode(s);
const asText = (b: Uint8Array) => new TextDecoder().decode(b);

describe("fuzz: the mesh's receive path", () => {
  const hello = '{"name":"0a:00:00:00:00:09","nickname":"x","uid":"u1"}';
  const entry = `0a:00:00:00:00:09 1 {"k":"x","u":"u1","a":["10.9.9.9:6783"],"c":[],"p":[]}`;
  const plainSamples = [
    concat(preamble(), encodeFrame(FrameType.Hello, hello), encodeFrame(FrameType.Gossip, entry)),
    concat(preamble(2, 2), encodeFrame(FrameType.Mode, Uint8Array.of(0)), encodeFrame(FrameType.Hello, hello)),
    concat(
      preamble(),
      encodeFrame(FrameType.Digest, new Uint8Array(16)),
      encodeFrame(FrameType.Request, new Uint8Array(8)),
    ),
  ];
  const sealedSamples = [
    concat(
      preamble(2, 2),
      encodeFrame(FrameType.Mode, Uint8Array.of(1)),
      encodeFrame(FrameType.Noise, new Uint8Array(32)),
    ),
    concat(
      preamble(2, 2),
      encodeFrame(FrameType.Mode, Uint8Array.of(1)),
      encodeFrame(FrameType.Noise, new Uint8Array(96)),
    ),
  ];

  for (const [label, psk, samples] of [
    ["plain", undefined, plainSamples],
    ["with a password", meshPsk(text("fuzz-password"), "10.32.0.0/12"), sealedSamples],
  ] as const) {
    test(`${label}: 1500 mutated streams are dropped one by one; the real peers stay converged`, async () => {
      const clock = new VirtualClock();
      const net = new MemNet(clock);
      const logs: string[] = [];
      const router = (i: number, targets: string[]) => {
        const listen = `10.0.0.${i}:6783`;
        const r = new Router({
          name: nameFromSeed(Bun.hash(String(i)).toString(16).padStart(12, "0")),
          nickname: `n${i}`,
          listen,
          transport: net.transport(listen),
          sched: clock,
          log: (m) => logs.push(`n${i}: ${m}`),
          ...(psk ? { psk } : {}),
        });
        r.start();
        r.addTargets(targets);
        return r;
      };
      const r1 = router(1, []);
      const r2 = router(2, ["10.0.0.1:6783"]);
      await clock.run(3_000);
      expect(r1.established().map((c) => c.nickname)).toEqual(["n2"]);

      const rand = prng(label === "plain" ? 0x5eed : 0xc0ffee);
      const fuzzer = net.transport("10.9.9.9:1");
      let closed = 0;
      const inputs = 1500;
      for (let i = 0; i < inputs; i++) {
        const link = await fuzzer.dial("10.0.0.1:6783");
        link.onClose(() => closed++);
        link.onData(() => {});
        link.send(mutate(rand, rand.pick(samples), samples));
        if (i % 50 === 49) await clock.run(100);
      }
      // anything that did not close at once is a half-sent unit: the heartbeat timeout ends it
      await clock.run(15_000);
      expect(closed).toBe(inputs);
      expect(r1.established().map((c) => c.nickname)).toEqual(["n2"]);
      expect(r2.established().map((c) => c.nickname)).toEqual(["n1"]);
      expect(r1.topology.size).toBe(2);
      r1.stop();
      r2.stop();
    }, 60_000);
  }
});

describe("fuzz: the CNI configuration and environment", () => {
  const conf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "weave",
    type: "weave-net",
    hairpinMode: true,
    mtu: 1400,
    socket: "/run/weave/weave.sock",
    prevResult: {
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0", mac: "0a:58:0a:20:00:05", sandbox: "/var/run/netns/p" }],
      ips: [{ address: "10.32.0.5/12", gateway: "10.32.0.1", interface: 0 }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.32.0.1" }],
    },
    "cni.dev/valid-attachments": [{ containerID: "abc", ifname: "eth0" }],
  });
  const commands = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] as const;

  test("5000 mutated configurations: a result or a CniError with a spec code, nothing else", () => {
    const rand = prng(0xcafe);
    const samples = [text(conf), text('{"cniVersion":"0.4.0","name":"w","type":"weave-net"}')];
    const codes = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      const input = asText(mutate(rand, rand.pick(samples), samples));
      try {
        parseNetConf(input, rand.pick(commands));
      } catch (e) {
        if (!(e instanceof CniError)) throw new Error(`${(e as Error).name} on ${JSON.stringify(input)}: ${e}`);
        expect(e.message.length).toBeGreaterThan(0);
        codes.add(e.code);
      }
    }
    expect([...codes].every((c) => [1, 2, 4, 6, 7].includes(c))).toBe(true);
  });

  test("5000 mutated environments: a parsed env or a CniError naming a variable", () => {
    const rand = prng(0xbeef);
    const base = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "abc123",
      CNI_NETNS: "/var/run/netns/p1",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/opt/cni/bin",
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    };
    const keys = Object.keys(base) as (keyof typeof base)[];
    for (let i = 0; i < 5000; i++) {
      const env: Record<string, string | undefined> = { ...base };
      const key = rand.pick(keys);
      const value = asText(
        mutate(
          rand,
          text(base[key]),
          keys.map((k) => text(base[k])),
        ),
      );
      env[key] = rand.int(10) === 0 ? undefined : value;
      try {
        parseEnv(env);
      } catch (e) {
        if (!(e instanceof CniError)) throw new Error(`${(e as Error).name} on ${key}=${JSON.stringify(value)}: ${e}`);
        expect(e.message).toMatch(/CNI_[A-Z]+/);
      }
    }
  });
});

describe("fuzz: the agent's API", () => {
  test("3000 mutated requests over the socket and TCP: always a status, and the agent keeps serving", async () => {
    const world = new FakeWorld();
    world
      .ns("root")
      .links.set("eth0", { index: 99, name: "eth0", mtu: 1500, mac: "02:aa:00:00:00:01", up: true, group: 0 });
    world.ns("/ns/p1");
    const agent = new Agent(
      { range: parseCidr("10.32.0.0/12"), bridge: "weave", nickname: "n1", dataDir: "/tmp/fuzz" },
      {
        host: world.host("root"),
        openHost: (ns) => world.host(ns),
        checkNetns: (p) => (world.namespaces.has(p) ? { ok: true } : { ok: false, reason: "does not exist" }),
        store: memoryStore(),
        log: () => {},
        defer: (fn) => fn(),
      },
    );
    agent.start();
    const cniBody = JSON.stringify({
      command: "ADD",
      containerId: "c1",
      ifname: "eth0",
      netns: "/ns/p1",
      args: { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web" },
      conf: parseNetConf('{"cniVersion":"1.1.0","name":"weave","type":"weave-net"}', "ADD"),
    });
    const paths = ["/cni", "/ip/abc", "/ip", "/status", "/status/ipam", "/report", "/peer/aa:bb:cc:dd:ee:ff", "/"];
    const methods = ["GET", "POST", "DELETE", "PUT", "PATCH"];
    const rand = prng(0xa11);
    const statuses = new Set<number>();
    for (let i = 0; i < 3000; i++) {
      const path = asText(mutate(rand, text(rand.pick(paths)), paths.map(text)));
      const safePath = `/${encodeURI(path.replace(/^\/+/, "")).replace(/[?#]/g, "")}`;
      const method = rand.pick(methods);
      const body = method === "GET" ? undefined : asText(mutate(rand, text(cniBody), [text(cniBody)]));
      const req = new Request(`http://127.0.0.1:6784${safePath}`, { method, body });
      const caller = rand.int(2) ? { caller: { pid: 4242, uid: rand.int(4) ? 0 : 1000 } } : {};
      const res = await handleApi(agent, req, caller);
      expect(res.status).toBeGreaterThanOrEqual(200);
      expect(res.status).toBeLessThan(600);
      statuses.add(res.status);
      await res.text();
    }
    expect(statuses.has(403)).toBe(true);
    expect(statuses.has(400)).toBe(true);
    const status = await handleApi(agent, new Request("http://127.0.0.1:6784/status"));
    expect(status.status).toBe(200);
    const root = { caller: { pid: 1, uid: 0 } };
    const alloc = await handleApi(agent, new Request("http://127.0.0.1:6784/ip/after-fuzz", { method: "POST" }), root);
    expect(alloc.status).toBe(201);
  }, 60_000);
});
