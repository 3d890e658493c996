/**
 * The IPAM ring: seeding, joining, asking for and giving space, reclaiming; and a
 * property test over a simulated network with partitions, loss, reordering and
 * restarts, checking after every step that no address is owned or allocated twice.
 */
import { describe, expect, test } from "bun:test";
import {
  emptyState,
  giftKey,
  normalize,
  overlap,
  reclaim,
  share,
  spanSize,
  step,
  subtract,
  type Init,
  type IpamState,
  type PeerView,
} from "../../net/ipam/ring.ts";
import { Allocator, type Span } from "../../net/ipam/allocator.ts";
import { parseCidr } from "../../net/cidr.ts";
import { memoryStore } from "../support/fake-host.ts";

const RANGE: Span = [10 << 24, (10 << 24) + 1024];

describe("span arithmetic", () => {
  test("normalize, subtract, overlap, share", () => {
    expect(
      normalize([
        [5, 9],
        [0, 3],
        [3, 4],
        [8, 12],
        [20, 20],
      ]),
    ).toEqual([
      [0, 4],
      [5, 12],
    ]);
    expect(subtract([[0, 10]], [3, 5])).toEqual([
      [0, 3],
      [5, 10],
    ]);
    expect(subtract([[0, 10]], [0, 10])).toEqual([]);
    expect(
      overlap(
        [
          [0, 10],
          [20, 30],
        ],
        [[5, 25]],
      ),
    ).toEqual([
      [5, 10],
      [20, 25],
    ]);
    const names = ["c", "a", "b"];
    const parts = names.map((n) => share(names, n, [0, 100]));
    expect(normalize(parts)).toEqual([[0, 100]]);
    expect(spanSize(parts)).toBe(100);
    expect(share(names, "a", [0, 100])).toEqual([0, 33]);
  });
});

describe("ring steps", () => {
  const view = (name: string, state: IpamState, reachable = true, addresses: string[] = []): PeerView => ({
    name,
    reachable,
    addresses,
    state,
  });
  const noGive = () => undefined;

  test("a lone peer with no peers configured seeds the whole range", () => {
    const r = step("a", emptyState(), 0, [], { kind: "consensus", peers: [] }, RANGE, noGive);
    expect(r.state.owned).toEqual([RANGE]);
    expect(r.state.ring).not.toBe("");
  });

  test("consensus waits for every configured peer, then all split the same way", () => {
    const init = (self: string): Init => ({
      kind: "consensus",
      peers: ["10.0.0.1:6783", "10.0.0.2:6783", "10.0.0.3:6783"].filter(
        (a) => !a.startsWith(`10.0.0.${self === "a" ? 1 : self === "b" ? 2 : 3}`),
      ),
    });
    const addr = (n: string) => [`10.0.0.${n === "a" ? 1 : n === "b" ? 2 : 3}:6783`];
    let states: Record<string, IpamState> = { a: emptyState(), b: emptyState(), c: emptyState() };
    const r0 = step("a", states.a!, 0, [view("b", states.b!, true, addr("b"))], init("a"), RANGE, noGive);
    expect(r0.waiting).toContain("no answer yet from 10.0.0.3:6783");
    for (let round = 0; round < 3; round++) {
      const next: Record<string, IpamState> = {};
      for (const n of ["a", "b", "c"]) {
        const vs = ["a", "b", "c"].filter((o) => o !== n).map((o) => view(o, states[o]!, true, addr(o)));
        next[n] = step(n, states[n]!, 0, vs, init(n), RANGE, noGive).state;
      }
      states = next;
    }
    const owned = ["a", "b", "c"].map((n) => states[n]!.owned);
    expect(normalize(owned.flat())).toEqual([RANGE]);
    expect(overlap(owned[0]!, owned[1]!)).toEqual([]);
    expect(new Set(["a", "b", "c"].map((n) => states[n]!.ring)).size).toBe(1);
  });

  test("a different proposal is named in the waiting reason", () => {
    const a = step(
      "a",
      emptyState(),
      0,
      [view("b", { ...emptyState(), prop: ["b", "x"] }, true, ["10.0.0.2:6783"])],
      { kind: "consensus", peers: ["10.0.0.2:6783"] },
      RANGE,
      noGive,
    );
    expect(a.waiting).toContain("b proposes a different set");
  });

  test("seed list: only seeds own space; others wait, then join and ask", () => {
    const init: Init = { kind: "seed", names: ["a", "b"] };
    const a = step("a", emptyState(), 0, [], init, RANGE, noGive).state;
    expect(a.owned).toEqual([share(["a", "b"], "a", RANGE)]);
    expect(step("z", emptyState(), 0, [], init, RANGE, noGive).waiting).toContain("seed peers a, b");
    const z = step("z", emptyState(), 0, [view("a", a)], init, RANGE, noGive).state;
    expect(z.ring).toBe(a.ring);
    expect(z.want).toBe(1);
  });

  test("asking, giving, accepting, acknowledging", () => {
    const a0: IpamState = { ...emptyState(), ring: "r", owned: [RANGE], free: 1024 };
    const z0: IpamState = { ...emptyState(), ring: "r" };
    const z1 = step("z", z0, 0, [view("a", a0)], { kind: "observer" }, RANGE, noGive).state;
    expect(z1.want).toBe(1);
    const a1 = step("a", a0, 1024, [view("z", z1)], { kind: "observer" }, RANGE, () => [
      RANGE[0] + 512,
      RANGE[1],
    ]).state;
    expect(a1.gifts).toEqual([{ to: "z", span: [RANGE[0] + 512, RANGE[1]], id: 0 }]);
    expect(a1.owned).toEqual([[RANGE[0], RANGE[0] + 512]]);
    const z2 = step("z", z1, 0, [view("a", a1)], { kind: "observer" }, RANGE, noGive).state;
    expect(z2.owned).toEqual([[RANGE[0] + 512, RANGE[1]]]);
    expect(z2.want).toBe(0);
    expect(z2.acks).toEqual([giftKey("a", a1.gifts[0]!)]);
    // accepting twice never happens
    expect(step("z", z2, 512, [view("a", a1)], { kind: "observer" }, RANGE, noGive).state.owned).toEqual(z2.owned);
    const a2 = step("a", a1, 512, [view("z", z2)], { kind: "observer" }, RANGE, noGive).state;
    expect(a2.gifts).toEqual([]);
    // an old copy of a's state (still listing the gift) never gives it twice
    const z3 = step("z", { ...z2, owned: [] }, 0, [view("a", a1)], { kind: "observer" }, RANGE, noGive).state;
    expect(z3.owned).toEqual([]);
  });

  test("only the donor with the most free space gives", () => {
    const asker: IpamState = { ...emptyState(), ring: "r", want: 1 };
    const small: IpamState = { ...emptyState(), ring: "r", owned: [[0, 10]], free: 10 };
    const big: IpamState = { ...emptyState(), ring: "r", owned: [[10, 100]], free: 90 };
    expect(
      step("s", small, 10, [view("z", asker), view("b", big)], { kind: "observer" }, RANGE, () => [5, 10]).state.gifts,
    ).toEqual([]);
    expect(
      step("b", big, 90, [view("z", asker), view("s", small)], { kind: "observer" }, RANGE, () => [55, 100]).state.gifts
        .length,
    ).toBe(1);
  });

  test("reclaim takes a dead peer's spans, minus what others own; the returning peer drops them", () => {
    const heir: IpamState = { ...emptyState(), ring: "r", owned: [[0, 50]] };
    const dead: IpamState = { ...emptyState(), ring: "r", owned: [[50, 100]] };
    const other: IpamState = { ...emptyState(), ring: "r", owned: [[90, 100]] };
    const { state, taken } = reclaim("h", heir, view("d", dead), [view("o", other)]);
    expect(taken).toEqual([[50, 90]]);
    expect(state.reclaimed).toEqual(["d"]);
    const back = step("d", dead, 50, [view("h", state)], { kind: "observer" }, RANGE, noGive);
    expect(back.state.owned).toEqual([[90, 100]]);
    expect(back.notes[0]).toContain("took over");
  });
});

/** A simulated network of peers exchanging IPAM states under faults. */
function simulate(seed: number, peers: number, steps: number) {
  let x = seed;
  const rand = () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
  const cidr = parseCidr("10.0.0.0/22");
  const range: Span = [cidr.base, cidr.base + 1024];
  type P = {
    name: string;
    state: IpamState;
    version: number;
    views: Map<string, { v: number; s: IpamState }>;
    alloc: Allocator;
    n: number;
    group: number;
    init: Init;
  };
  const names = Array.from({ length: peers }, (_, i) => `p${String(i).padStart(2, "0")}`);
  const initial = names.slice(0, Math.max(1, Math.floor(peers / 2)));
  const ps: P[] = names.map((name, i) => ({
    name,
    state: emptyState(),
    version: 0,
    views: new Map(),
    alloc: new Allocator(cidr, memoryStore(), []),
    n: 0,
    group: 0,
    init: i < initial.length ? { kind: "seed", names: initial } : { kind: "observer" },
  }));
  const inflight: { to: P; from: string; v: number; s: IpamState }[] = [];
  const trace: string[] = [];
  const check = (when: string) => {
    for (let i = 0; i < ps.length; i++) {
      for (let j = i + 1; j < ps.length; j++) {
        const o = overlap(ps[i]!.state.owned, ps[j]!.state.owned);
        if (o.length)
          throw new Error(
            `seed ${seed} ${when}: ${ps[i]!.name} and ${ps[j]!.name} both own ${JSON.stringify(o)}\n${process.env.RING_TRACE ? trace.slice(-40).join("\n") : ""}`,
          );
      }
    }
    const seen = new Map<number, string>();
    for (const p of ps) {
      for (const e of p.alloc.list()) {
        if (seen.has(e.address))
          throw new Error(`seed ${seed} ${when}: ${e.address} allocated by ${seen.get(e.address)} and ${p.name}`);
        seen.set(e.address, p.name);
      }
    }
  };
  const runStep = (p: P) => {
    const views: PeerView[] = [...p.views].map(([name, { s }]) => ({
      name,
      reachable: ps.find((q) => q.name === name)!.group === p.group,
      addresses: [],
      state: s,
    }));
    const r = step(p.name, p.state, p.alloc.free, views, p.init, range, (owned) => p.alloc.spanToGive(owned));
    if (r.changed) {
      trace.push(
        `${p.name} v${p.version + 1}: ${r.notes.join("; ")} owned=${JSON.stringify(r.state.owned.map(([a, b]) => [a - range[0], b - range[0]]))} gifts=${JSON.stringify(r.state.gifts.map((g) => [g.to, g.id, g.span[0] - range[0], g.span[1] - range[0]]))} acks=${r.state.acks}`,
      );
      p.state = r.state;
      p.alloc.setOwned(p.state.owned);
      p.version++;
      for (const q of ps)
        if (q !== p) inflight.push({ to: q, from: p.name, v: p.version, s: structuredClone(p.state) });
    }
  };
  for (let t = 0; t < steps; t++) {
    const r = rand();
    const p = ps[Math.floor(rand() * ps.length)]!;
    if (r < 0.05) {
      // partition: everyone picks group 0 or 1
      for (const q of ps) q.group = rand() < 0.3 ? 1 : 0;
    } else if (r < 0.08) {
      for (const q of ps) q.group = 0; // heal
    } else if (r < 0.1) {
      p.views.clear(); // restart: state and allocations persisted, views lost
    } else if (r < 0.45 && inflight.length) {
      // deliver a random message (reordering); lost if across the partition or by chance
      const m = inflight.splice(Math.floor(rand() * inflight.length), 1)[0]!;
      const from = ps.find((q) => q.name === m.from)!;
      if (from.group === m.to.group && rand() > 0.1) {
        const have = m.to.views.get(m.from);
        if (!have || have.v < m.v) m.to.views.set(m.from, { v: m.v, s: m.s });
      }
    } else if (r < 0.7) {
      runStep(p);
    } else if (r < 0.85) {
      try {
        p.alloc.allocate(`c${p.n++}`, "eth0");
      } catch {
        /* out of space: the next step asks */
      }
    } else {
      const held = p.alloc.list();
      if (held.length) p.alloc.release(held[Math.floor(rand() * held.length)]!.containerId);
    }
    check(`after step ${t}`);
  }
  // heal everything and let it settle: every gift lands
  for (const q of ps) q.group = 0;
  for (let round = 0; round < 200; round++) {
    // anti-entropy, as the mesh's periodic digests: a state whose last copy was lost
    // still reaches everyone
    if (round % 10 === 0)
      for (const p of ps)
        for (const q of ps)
          if (q !== p) inflight.push({ to: q, from: p.name, v: p.version, s: structuredClone(p.state) });
    while (inflight.length) {
      const m = inflight.shift()!;
      const have = m.to.views.get(m.from);
      if (!have || have.v < m.v) m.to.views.set(m.from, { v: m.v, s: m.s });
    }
    for (const p of ps) runStep(p);
    check(`settling round ${round}`);
  }
  return ps;
}

describe("removal requests", () => {
  const view = (name: string, state: IpamState, reachable = true): PeerView => ({
    name,
    reachable,
    addresses: [],
    state,
  });
  test("only the heir (lowest other name in the ring, reachable or not) takes a removed peer's space, once", () => {
    const a: IpamState = { ...emptyState(), ring: "r", owned: [[0, 30]], claimed: true };
    const b: IpamState = { ...emptyState(), ring: "r", owned: [[30, 60]], claimed: true, removing: ["z"] };
    const z: IpamState = { ...emptyState(), ring: "r", owned: [[60, 100]], claimed: true };
    const noGive = () => undefined;
    // b asked; b is not the heir (a is): b takes nothing
    const b1 = step("b", b, 30, [view("a", a), view("z", z, false)], { kind: "observer" }, RANGE, noGive).state;
    expect(b1.owned).toEqual([[30, 60]]);
    // a sees the request and takes z's space
    const a1 = step("a", a, 30, [view("b", b1), view("z", z, false)], { kind: "observer" }, RANGE, noGive).state;
    expect(a1.owned).toEqual([
      [0, 30],
      [60, 100],
    ]);
    expect(a1.reclaimed).toEqual(["z"]);
    // once done, nobody takes it again, and b forgets its request
    expect(
      step("a", a1, 70, [view("b", b1), view("z", z, false)], { kind: "observer" }, RANGE, noGive).state.owned,
    ).toEqual(a1.owned);
    const b2 = step("b", b1, 30, [view("a", a1), view("z", z, false)], { kind: "observer" }, RANGE, noGive).state;
    expect(b2.owned).toEqual([[30, 60]]);
    expect(b2.removing).toEqual([]);
    // a reachable peer is never taken over
    const stillThere = step("a", a, 30, [view("b", b1), view("z", z, true)], { kind: "observer" }, RANGE, noGive).state;
    expect(stillThere.owned).toEqual([[0, 30]]);
  });
});

describe("ring property test", () => {
  for (let i = 1; i <= 12; i++) {
    const peers = 3 + ((i * 7) % 18);
    test(`seed ${i}, ${peers} peers: no address owned or allocated twice, nothing lost`, () => {
      const ps = simulate(i, peers, 3000);
      const owned = ps.flatMap((p) => p.state.owned);
      const inGifts = ps.flatMap((p) => p.state.gifts.map((g) => g.span));
      // after settling, all space is owned by someone and no gift is pending
      expect(
        inGifts,
        process.env.RING_TRACE
          ? JSON.stringify(
              ps.map((p) => ({
                n: p.name,
                ring: p.state.ring,
                gifts: p.state.gifts,
                acks: p.state.acks,
                want: p.state.want,
                owned: p.state.owned.length,
              })),
            )
          : "",
      ).toEqual([]);
      expect(normalize(owned)).toEqual([[10 << 24, (10 << 24) + 1024]]);
    });
  }
});
