/**
 * The sleeve engine (net/host/sleeve.ts) on real namespaces: three nodes on one underlay
 * bridge, each with a bridge `weave`, the engine's TAP on it and one pod. The engine runs
 * inside each node namespace as a child process (tests/support/sleeve-node.ts) that takes
 * its table as JSON lines; nodes a and b run the compiled binary (dist/weave
 * sleeve-selftest when it has that command, else the same sources compiled here with the
 * product's build flags), node c runs from source.
 *
 *   <u>u              underlay: bridge br0
 *   <u>a, <u>b, <u>c  nodes: eth0 198.18.230.1/.2/.3 (MTU 1500), bridge weave + TAP sleeve (MTU 1450)
 *   <u>pa, pb, pc     pods: eth0 10.40.230.1/.2/.3/24 (MTU 1450) on their node's bridge
 *
 * Each test gives the engines the tables it needs (the same processes throughout: a new
 * table takes effect without a restart). Namespaces by name and processes by pid are
 * removed in afterAll, also when a test failed. No throughput or timing assertions: the
 * figures are for bench runs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import type { SleeveStats, SleeveTable } from "../../net/host/sleeve.ts";
import { checkFrame, encodeData, encodeHeartbeat, parseKey, seal } from "../../net/sleeve/frame.ts";
import { createNamedNetns, deleteNamedNetns, netnsPath } from "../../net/host/netns.ts";
import { canRunHost, uniqueName, WEAVE } from "../support/env.ts";
import { compileSleeveNode, framedDatagrams, hasSelftest, SleeveNode, SOURCE_NODE } from "../support/sleeve-node.ts";
import { eventually } from "../support/wait.ts";

type X = "a" | "b" | "c";
const NODES: X[] = ["a", "b", "c"];
const IP: Record<X, string> = { a: "198.18.230.1", b: "198.18.230.2", c: "198.18.230.3" };
const POD: Record<X, string> = { a: "10.40.230.1", b: "10.40.230.2", c: "10.40.230.3" };
const MAC: Record<X, string> = { a: "02:00:0a:28:e6:01", b: "02:00:0a:28:e6:02", c: "02:00:0a:28:e6:03" };
const TAP = "sleeve";
const PORT = 6783;

/** The key x uses to send to y (and y to receive from x): fixed per pair, per generation. */
function pairKey(x: X, y: X, gen = 1): string {
  return createHash("sha256").update(`sleeve-test ${gen} ${x}->${y}`).digest("base64");
}

/** x's table for a topology of direct links: routes by shortest path, every reachable pod's MAC, flood to all reachable. */
function tableFor(x: X, links: [X, X][], opts: { sealed?: boolean; gen?: number } = {}): SleeveTable {
  const near = (n: X) => links.flatMap(([p, q]) => (p === n ? [q] : q === n ? [p] : []));
  const via = new Map<X, X>();
  const queue: [X, X][] = near(x).map((n) => [n, n]);
  while (queue.length) {
    const [n, first] = queue.shift()!;
    if (n === x || via.has(n)) continue;
    via.set(n, first);
    for (const m of near(n)) queue.push([m, first]);
  }
  const keys = (y: X) => (opts.sealed ? { sendKey: pairKey(x, y, opts.gen), recvKey: pairKey(y, x, opts.gen) } : {});
  const peers = [...via.keys()];
  return {
    self: IP[x],
    neighbours: near(x).map((y) => ({ ip: IP[y], ...keys(y) })),
    routes: peers.map((y) => ({ dst: IP[y], via: IP[via.get(y)!] })),
    macs: peers.map((y) => ({ mac: MAC[y], peer: IP[y] })),
    flood: peers.map((y) => IP[y]),
    pingFrom: near(x).map((y) => IP[y]),
    sealed: opts.sealed === true,
  };
}

const ethFrame = (to: X, from: X) => {
  const f = new Uint8Array(60);
  f.set(
    [...MAC[to].split(":"), ...MAC[from].split(":")].map((h) => Number.parseInt(h, 16)),
    0,
  );
  f.set([0x88, 0xb5], 12); // local experimental ethertype: nothing in a pod answers it
  return f;
};

/** mulberry32, for the garbage. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.skipIf(!canRunHost)("sleeve engine on real namespaces", () => {
  const u = uniqueName("sl");
  const ns = (s: string) => `${u}${s}`;
  const all = ["u", ...NODES, ...NODES.map((x) => `p${x}`)].map(ns);
  const tmp = mkdtempSync(join(tmpdir(), `${u}-`));
  const nodes = {} as Record<X, SleeveNode>;
  let compiledHow = "";

  const sh = (n: string, cmd: string[], stdin?: Uint8Array) => {
    // Bounded: a transfer that stalls fails its test instead of hanging the run.
    const r = Bun.spawnSync(["nsenter", `--net=${netnsPath(n)}`, ...cmd], {
      stdin: stdin ?? "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 20_000,
    });
    return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
  };
  const must = (n: string, cmd: string[]) => {
    const r = sh(n, cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${n}: ${r.out}`);
    return r.out;
  };
  const ping = (from: X, to: X, extra: string[] = []) =>
    sh(ns(`p${from}`), ["ping", "-c", "1", "-W", "1", ...extra, POD[to]]).code === 0;
  const pingEventually = (from: X, to: X) => eventually(() => ping(from, to), 10000);
  /** Send datagrams to x's engine from node `from`'s namespace (its underlay address is the source). */
  const sendFrom = (from: X | "pod", to: X, ds: Uint8Array[]) => {
    const where = from === "pod" ? ns("pa") : ns(from);
    const r = sh(where, [...SOURCE_NODE, "--send", `${IP[to]}:${PORT}`], framedDatagrams(ds));
    if (r.code !== 0) throw new Error(`sending from ${where}: ${r.out}`);
  };
  const setTables = (links: [X, X][], opts: { sealed?: boolean; gen?: number } = {}) =>
    Promise.all(NODES.map((x) => nodes[x].setTable(tableFor(x, links, opts))));
  const stats = async (): Promise<Record<X, SleeveStats>> => {
    const [a, b, c] = await Promise.all(NODES.map((x) => nodes[x].stats()));
    return { a: a!, b: b!, c: c! };
  };

  beforeAll(async () => {
    for (const n of all) createNamedNetns(n);
    must(ns("u"), ["ip", "link", "add", "br0", "type", "bridge"]);
    must(ns("u"), ["ip", "link", "set", "br0", "up"]);
    NODES.forEach((x, i) => {
      const node = ns(x);
      const pod = ns(`p${x}`);
      for (const n of [node, pod]) must(n, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
      must(ns("u"), ["ip", "link", "add", `u${x}`, "type", "veth", "peer", "name", "eth0", "netns", node]);
      must(ns("u"), ["ip", "link", "set", `u${x}`, "master", "br0", "up"]);
      must(node, ["ip", "addr", "add", `${IP[x]}/24`, "dev", "eth0"]);
      must(node, ["ip", "link", "set", "eth0", "up"]);
      must(node, ["ip", "link", "add", "weave", "mtu", "1450", "type", "bridge"]);
      must(node, ["ip", "link", "set", "weave", "up"]);
      must(node, ["ip", "link", "add", "vp", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", pod]);
      must(node, ["ip", "link", "set", "vp", "master", "weave", "up"]);
      must(pod, ["ip", "link", "set", "eth0", "address", MAC[x], "mtu", "1450", "up"]);
      must(pod, ["ip", "addr", "add", `${POD[x]}/24`, "dev", "eth0"]);
      void i;
    });
    let compiled: string[];
    if (hasSelftest(WEAVE)) {
      compiled = [WEAVE, "sleeve-selftest"];
      compiledHow = "dist/weave sleeve-selftest";
    } else {
      compiled = [join(tmp, "sleeve-node")];
      compileSleeveNode(compiled[0]!);
      compiledHow = "tests/support/sleeve-node.ts compiled with scripts/build.ts's flags and worker entrypoints";
    }
    console.log(`sleeve nodes a, b: ${compiledHow}; c: from source`);
    for (const x of NODES) {
      nodes[x] = await SleeveNode.start(ns(x), TAP, x === "c" ? SOURCE_NODE : compiled);
      must(ns(x), ["ip", "link", "set", TAP, "master", "weave", "mtu", "1450", "up"]);
    }
  }, 90_000);

  afterAll(async () => {
    for (const x of NODES) nodes[x]?.kill();
    await Promise.all(NODES.map((x) => nodes[x]?.stop()));
    for (const n of all) deleteNamedNetns(n);
    rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  test("pods ping across the sleeve; ARP crosses as a flooded broadcast", async () => {
    await setTables([["a", "b"]]);
    expect(await pingEventually("a", "b")).toBe(true);
    expect(ping("b", "a")).toBe(true);
    const s = await stats();
    // The first ARP request was a broadcast: it went out by flood and was written to b's TAP.
    expect(s.a.txFrames).toBeGreaterThanOrEqual(3);
    expect(s.b.rxFrames).toBeGreaterThanOrEqual(3);
    expect(s.a.rxFrames).toBeGreaterThanOrEqual(2);
    expect(sh(ns("pa"), ["ip", "neigh", "show", POD.b]).out).toContain(MAC.b);
    for (const x of ["a", "b"] as const)
      for (const r of ["bad-frame", "auth", "unknown-source"]) expect(s[x].drops[r]).toBe(0);
  }, 30_000);

  test("a full-size frame crosses with don't-fragment; one byte more does not", () => {
    expect(ping("a", "b", ["-M", "do", "-s", String(1450 - 28)])).toBe(true);
    expect(ping("a", "b", ["-M", "do", "-s", String(1450 - 27)])).toBe(false);
  });

  // Big enough for the loops to tier up in the JIT, where a pointer gone stale once sent
  // garbage (net/host/sleeve-sys.ts, stable()); and through the coalescing of sleeve-gro.ts.
  test("TCP carries a 32 MB payload intact, and no datagram on the way is malformed", async () => {
    const size = 32 << 20;
    const before = await stats();
    const server = Bun.spawn(
      [
        "nsenter",
        `--net=${netnsPath(ns("pb"))}`,
        process.execPath,
        "-e",
        `const net = require("node:net"); const b = Buffer.alloc(${size}); for (let i = 0; i < b.length; i++) b[i] = (i * 2654435761) >>> 24;
         const s = net.createServer((c) => c.end(b, () => s.close())); s.listen(5001, "${POD.b}", () => console.log("listening"));`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    try {
      const reader = server.stdout.getReader();
      await reader.read();
      const client = sh(ns("pa"), [
        process.execPath,
        "-e",
        `const net = require("node:net"); const h = require("node:crypto").createHash("sha256"); let n = 0;
         net.connect(5001, "${POD.b}").on("data", (d) => { n += d.length; h.update(d); }).on("end", () => console.log(n, h.digest("hex")));`,
      ]);
      const want = Buffer.alloc(size);
      for (let i = 0; i < want.length; i++) want[i] = (i * 2654435761) >>> 24;
      expect(client.out.trim()).toBe(`${size} ${createHash("sha256").update(want).digest("hex")}`);
      const after = await stats();
      for (const x of ["a", "b"] as const) expect(after[x].drops["bad-frame"]).toBe(before[x].drops["bad-frame"]!);
      expect(after.a.rxFrames - before.a.rxFrames).toBeGreaterThan(size / 1500);
    } finally {
      server.kill(9);
      await server.exited;
    }
  }, 30_000);

  test("a frame from a source that is not a neighbour is dropped and counted", async () => {
    const before = (await stats()).a;
    // c is on the same underlay but not a's neighbour in this table.
    sendFrom("c", "a", [encodeData(IP.a, ethFrame("a", "c"))]);
    expect(
      await eventually(
        async () => (await stats()).a.drops["unknown-source"] === before.drops["unknown-source"]! + 1,
        5000,
      ),
    ).toBe(true);
    expect((await stats()).a.rxFrames).toBe(before.rxFrames);
  });

  test("a unicast frame for a MAC the table does not have goes to the flood peers, as unknown unicast", async () => {
    const before = await stats();
    must(ns("pa"), ["ip", "neigh", "replace", "10.40.230.99", "lladdr", "02:00:0a:28:e6:63", "dev", "eth0"]);
    sh(ns("pa"), ["ping", "-c", "1", "-W", "1", "10.40.230.99"]);
    expect(await eventually(async () => (await stats()).b.rxFrames > before.b.rxFrames, 5000)).toBe(true);
    expect((await stats()).a.drops["no-mac"]).toBe(before.a.drops["no-mac"]!);
  });

  test("5000 garbage datagrams from a neighbour (seed 6783) are dropped and counted while pods keep talking", async () => {
    const random = rng(6783);
    const int = (n: number) => Math.floor(random() * n);
    const valid = [
      encodeData(IP.a, ethFrame("a", "b")),
      encodeHeartbeat({ type: "ping", sender: IP.b, nonce: 1n, sentAtMs: 0 }),
    ];
    const garbage: Uint8Array[] = [];
    while (garbage.length < 5000) {
      let g: Uint8Array;
      if (random() < 0.3) g = Uint8Array.from({ length: int(200) }, () => int(256));
      else {
        g = valid[int(valid.length)]!.slice(0, int(80) + 1);
        for (let k = 1 + int(3); k > 0; k--) g[int(Math.min(g.length, 8))] = int(256);
      }
      // Only what the engine must refuse as a bad frame, so the count is exact.
      if (g.length > 0 && checkFrame(g, 0, g.length) !== 0) garbage.push(g);
    }
    const before = (await stats()).a;
    const pinger = Bun.spawn(
      ["nsenter", `--net=${netnsPath(ns("pa"))}`, "ping", "-c", "40", "-i", "0.05", "-W", "1", POD.b],
      {
        stdout: "pipe",
      },
    );
    sendFrom("b", "a", garbage);
    await pinger.exited;
    const pingOut = await new Response(pinger.stdout).text();
    const received = Number(/(\d+) received/.exec(pingOut)?.[1] ?? 0);
    expect(
      await eventually(async () => (await stats()).a.drops["bad-frame"] === before.drops["bad-frame"]! + 5000, 10000),
    ).toBe(true);
    expect(received).toBeGreaterThan(30);
    expect(ping("a", "b")).toBe(true);
  }, 60_000);

  test("heartbeat: a ping from a pingFrom address is answered with a pong echoing nonce and time; others get nothing", async () => {
    const t0 = Date.now();
    await nodes.a.ping(IP.b, 0xabcdef0123n);
    expect(await eventually(() => nodes.a.pongs.some((p) => p.nonce === String(0xabcdef0123n)), 5000)).toBe(true);
    const pong = nodes.a.pongs.find((p) => p.nonce === String(0xabcdef0123n))!;
    expect(pong.from).toBe(IP.b);
    expect(pong.sentAtMs).toBeGreaterThanOrEqual(t0 - 1000);
    expect(pong.sentAtMs).toBeLessThanOrEqual(Date.now());
    // c is not in a's pingFrom: a counts it and does not answer.
    const before = (await stats()).a;
    await nodes.c.ping(IP.a, 77n);
    expect(
      await eventually(
        async () => (await stats()).a.drops["unknown-source"] === before.drops["unknown-source"]! + 1,
        5000,
      ),
    ).toBe(true);
    await Bun.sleep(300);
    expect(nodes.c.pongs.some((p) => p.nonce === "77")).toBe(false);
  });

  test("sealed: pods ping; a plain frame, a wrong key and a replayed counter are each dropped and counted", async () => {
    await setTables([["a", "b"]], { sealed: true });
    expect(await pingEventually("a", "b")).toBe(true);
    expect(ping("b", "a")).toBe(true);
    const before = (await stats()).a;
    const frame = ethFrame("a", "b");
    sendFrom("b", "a", [encodeData(IP.a, frame)]);
    sendFrom("b", "a", [seal(parseKey(pairKey("b", "a", 99)), 1_000_000, IP.a, frame)]);
    // Counter 0 of b's key to a was b's first sealed frame to a, accepted already.
    sendFrom("b", "a", [seal(parseKey(pairKey("b", "a")), 0, IP.a, frame)]);
    // And one sealed here (node:crypto) with a counter b's engine has not reached (but
    // inside the window, so b's own frames stay acceptable): the engine's libcrypto opens it.
    const rxBefore = (await stats()).a.rxFrames;
    sendFrom("b", "a", [seal(parseKey(pairKey("b", "a")), 1500, IP.a, frame)]);
    expect(await eventually(async () => (await stats()).a.rxFrames > rxBefore, 5000)).toBe(true);
    const want = { "plain-when-sealed": 1, auth: 1, replay: 1 };
    const delta = async () => {
      const now = (await stats()).a;
      return Object.fromEntries(Object.keys(want).map((k) => [k, now.drops[k]! - before.drops[k]!]));
    };
    await eventually(async () => JSON.stringify(await delta()) === JSON.stringify(want), 5000);
    expect(await delta()).toEqual(want);
    expect((await stats()).b.drops.auth).toBe(0);
  }, 30_000);

  test("sealed: new keys in a new table take over without a restart", async () => {
    await setTables([["a", "b"]], { sealed: true, gen: 2 });
    expect(await pingEventually("a", "b")).toBe(true);
    expect(ping("b", "a")).toBe(true);
  }, 30_000);

  for (const sealed of [false, true])
    test(`relay (${sealed ? "sealed" : "plain"}): a reaches c through b, with no direct path between a and c`, async () => {
      const haveNft = Bun.which("nft") !== null;
      if (haveNft)
        for (const [x, other] of [
          ["a", IP.c],
          ["c", IP.a],
        ] as const) {
          sh(ns(x), ["nft", "delete", "table", "inet", "sleevetest"]);
          must(ns(x), [
            "nft",
            `add table inet sleevetest; add chain inet sleevetest in { type filter hook input priority 0; }; add chain inet sleevetest out { type filter hook output priority 0; }; add rule inet sleevetest in ip saddr ${other} drop; add rule inet sleevetest out ip daddr ${other} drop`,
          ]);
        }
      await setTables(
        [
          ["a", "b"],
          ["b", "c"],
        ],
        { sealed },
      );
      const before = (await stats()).b;
      expect(await pingEventually("a", "c")).toBe(true);
      expect(ping("c", "a")).toBe(true);
      const after = await stats();
      expect(after.b.relayed).toBeGreaterThanOrEqual(before.relayed + 4);
      expect(after.c.rxFrames).toBeGreaterThan(0);
      expect(after.b.drops["no-route"]).toBe(before.drops["no-route"]!);
      expect(after.b.drops.auth).toBe(before.drops.auth!);
      if (haveNft) expect(sh(ns("a"), ["nft", "list", "table", "inet", "sleevetest"]).code).toBe(0);
    }, 30_000);

  test("a routing loop ends at the hop limit (ttl), each frame relayed at most 3 times", async () => {
    // a sends c's traffic to b, b sends it back to a: a loop the hop limit must cut.
    const ta = tableFor("a", [["a", "b"]]);
    ta.routes.push({ dst: IP.c, via: IP.b });
    ta.macs.push({ mac: MAC.c, peer: IP.c });
    const tb = tableFor("b", [["a", "b"]]);
    tb.routes.push({ dst: IP.c, via: IP.a });
    await Promise.all([nodes.a.setTable(ta), nodes.b.setTable(tb)]);
    await Bun.sleep(50);
    const before = await stats();
    must(ns("pa"), ["ip", "neigh", "replace", POD.c, "lladdr", MAC.c, "dev", "eth0"]);
    sh(ns("pa"), ["ping", "-c", "1", "-W", "1", POD.c]);
    const after = await stats();
    const ttl = after.a.drops.ttl! + after.b.drops.ttl! - before.a.drops.ttl! - before.b.drops.ttl!;
    const relayed = after.a.relayed + after.b.relayed - before.a.relayed - before.b.relayed;
    expect(ttl).toBe(1);
    expect(relayed).toBe(3);
  });

  test("stop(): the workers end, the fds close, the TAP is gone and the process exits 0", async () => {
    for (const x of NODES) expect(sh(ns(x), ["ip", "link", "show", TAP]).code).toBe(0);
    const codes = await Promise.all(NODES.map((x) => nodes[x].stop()));
    expect(codes).toEqual([0, 0, 0]);
    for (const x of NODES) expect(sh(ns(x), ["ip", "link", "show", TAP]).code).not.toBe(0);
    for (const x of NODES) expect(sh(ns(x), ["ss", "-Hlun", `sport = :${PORT}`]).out.trim()).toBe("");
  }, 30_000);
});
