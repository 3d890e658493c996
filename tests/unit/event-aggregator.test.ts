/**
 * Node Events as the API expects them, on a virtual clock: one Event per (reason, key)
 * whose count and lastTimestamp are PATCHed, never one per retry; writes rate-limited per
 * series and by a token bucket overall; a quiet series ends; a PATCH that finds the Event
 * gone creates it again. And which situations of the agent become occurrences.
 */
import { describe, expect, test } from "bun:test";
import { EventAggregator, type EventWrite } from "../../net/events/aggregator.ts";
import {
  ipamWaiting,
  mtuMismatch,
  peerFailure,
  rangeOverlaps,
  REASONS,
  IPAM_WAIT_GRACE_MS,
} from "../../net/agent/node-events.ts";
import { parseCidr } from "../../net/cidr.ts";

function setup(o: Partial<ConstructorParameters<typeof EventAggregator>[0]> = {}) {
  let t = 1_000_000;
  const agg = new EventAggregator({ now: () => t, minIntervalMs: 10_000, ...o });
  /** What the API holds: Event name -> its fields. */
  const api = new Map<string, { reason: string; count: number; first: number; last: number; message: string }>();
  let made = 0;
  /** Perform every due write against `api`, as the recorder does. */
  const flush = (fail?: (w: EventWrite) => "gone" | "error" | undefined) => {
    const writes = agg.due();
    for (const w of writes) {
      const f = fail?.(w);
      if (f) {
        agg.failed(w, f === "gone");
        continue;
      }
      if (w.op === "create") {
        const name = `n1.${made++}`;
        api.set(name, {
          reason: w.reason,
          count: w.count,
          first: w.firstTimestamp,
          last: w.lastTimestamp,
          message: w.message,
        });
        agg.done(w, name);
      } else {
        const e = api.get(w.name)!;
        Object.assign(e, { count: w.count, last: w.lastTimestamp, message: w.message });
        agg.done(w, w.name);
      }
    }
    return writes;
  };
  const advance = (ms: number) => {
    t += ms;
  };
  return { agg, api, flush, advance, now: () => t };
}

const fail = (n: number) => ({ reason: "WeavePeerConnectionFailing", key: "198.18.0.12:6783", message: `failed ${n}` });

describe("the event aggregator", () => {
  test("a failure repeated every second is one Event whose count grows, patched at most every 10 s", () => {
    const s = setup();
    const writes: EventWrite[] = [];
    const start = s.now();
    for (let i = 1; i <= 60; i++) {
      s.agg.record(fail(i));
      writes.push(...s.flush());
      s.advance(1000);
    }
    writes.push(...s.flush());
    expect(s.api.size).toBe(1);
    const e = [...s.api.values()][0]!;
    expect(e.count).toBe(60);
    expect(e.first).toBe(start);
    expect(e.last).toBe(start + 59_000);
    expect(e.message).toBe("failed 60");
    expect(writes.filter((w) => w.op === "create")).toHaveLength(1);
    // one create, then one patch per 10 s: never one write per retry
    expect(writes.length).toBeLessThanOrEqual(7);
    expect(writes.length).toBeGreaterThanOrEqual(6);
  });

  test("another key or reason is another Event; the same key is the same one", () => {
    const s = setup();
    s.agg.record(fail(1));
    s.agg.record({ ...fail(1), key: "198.18.0.13:6783" });
    s.agg.record({ reason: REASONS.ipamWaiting, key: "", message: "waiting" });
    s.agg.record(fail(2));
    s.flush();
    expect([...s.api.values()].map((e) => `${e.reason} ${e.count}`).sort()).toEqual([
      "WeaveIPAMWaiting 1",
      "WeavePeerConnectionFailing 1",
      "WeavePeerConnectionFailing 2",
    ]);
  });

  test("nothing new, nothing written", () => {
    const s = setup();
    s.agg.record(fail(1));
    expect(s.flush()).toHaveLength(1);
    s.advance(60_000);
    expect(s.flush()).toHaveLength(0);
  });

  test("a token bucket bounds the writes of all series together", () => {
    const s = setup({ burst: 5, refillMs: 10_000 });
    for (let i = 0; i < 20; i++) s.agg.record({ reason: "R", key: `k${i}`, message: "m" });
    expect(s.flush()).toHaveLength(5);
    expect(s.flush()).toHaveLength(0);
    s.advance(10_000);
    expect(s.flush()).toHaveLength(1);
    s.advance(30_000);
    expect(s.flush()).toHaveLength(3);
    // what waited is written later, none lost
    for (let i = 0; i < 10; i++) {
      s.advance(60_000);
      s.flush();
    }
    expect(s.api.size).toBe(20);
  });

  test("a series quiet for the window is over: its next occurrence is a new Event", () => {
    const s = setup({ windowMs: 600_000 });
    s.agg.record(fail(1));
    s.flush();
    s.advance(601_000);
    s.agg.record(fail(2));
    s.flush();
    expect([...s.api.values()].map((e) => e.count)).toEqual([1, 1]);
  });

  test("a PATCH that finds the Event gone creates it again with the whole count; other failures retry", () => {
    const s = setup();
    s.agg.record(fail(1));
    s.flush();
    s.advance(10_000);
    s.agg.record(fail(2));
    expect(s.flush(() => "error").map((w) => w.op)).toEqual(["patch"]);
    s.advance(10_000);
    expect(s.flush((w) => (w.op === "patch" ? "gone" : undefined)).map((w) => w.op)).toEqual(["patch"]);
    expect(s.flush().map((w) => w.op)).toEqual(["create"]);
    const counts = [...s.api.values()].map((e) => e.count);
    expect(counts).toEqual([1, 2]);
  });

  test("a write in flight is not repeated; the series is bounded", () => {
    const s = setup({ maxSeries: 3 });
    s.agg.record(fail(1));
    const first = s.agg.due();
    expect(first).toHaveLength(1);
    s.agg.record(fail(2));
    s.advance(20_000);
    expect(s.agg.due()).toHaveLength(0);
    s.agg.done(first[0]!, "n1.x");
    expect(s.agg.due()).toHaveLength(0);
    s.advance(10_000);
    expect(s.agg.due().map((w) => w.op)).toEqual(["patch"]);
    for (let i = 0; i < 10; i++) s.agg.record({ reason: "R", key: `k${i}`, message: "m" });
    expect(s.agg.size).toBeLessThanOrEqual(4);
  });
});

describe("what the agent records", () => {
  test("a peer connection from its third failure in a row", () => {
    const f = (attempt: number) =>
      peerFailure({ address: "198.18.0.12:6783", attempt, why: "Operation not permitted" });
    expect(f(1)).toBeUndefined();
    expect(f(2)).toBeUndefined();
    expect(f(3)).toMatchObject({ reason: "WeavePeerConnectionFailing", key: "198.18.0.12:6783" });
    expect(f(9)!.message).toContain("failed 9 times in a row (last: Operation not permitted)");
  });

  test("IPAM waiting: after the grace period, then once per period", () => {
    const t0 = 0;
    expect(ipamWaiting("awaiting consensus", t0, undefined, IPAM_WAIT_GRACE_MS - 1)).toBeUndefined();
    expect(ipamWaiting("awaiting consensus", t0, undefined, IPAM_WAIT_GRACE_MS)?.reason).toBe("WeaveIPAMWaiting");
    expect(ipamWaiting("awaiting consensus", t0, IPAM_WAIT_GRACE_MS, IPAM_WAIT_GRACE_MS + 5000)).toBeUndefined();
    expect(ipamWaiting("", undefined, undefined, 99_999)).toBeUndefined();
  });

  test("an MTU too big for the underlay, and routes overlapping the range", () => {
    expect(mtuMismatch(1500, 1500)?.message).toContain("set WEAVE_MTU to at most 1450");
    expect(mtuMismatch(1450, 1500)).toBeUndefined();
    expect(mtuMismatch(undefined, 1500)).toBeUndefined();
    const routes = [
      { dst: "0.0.0.0/0", table: 254, protocol: 3, scope: 0, dev: 1 },
      { dst: "10.32.5.0/24", gw: "198.18.0.1", table: 254, protocol: 3, scope: 0, dev: 1 },
      { dst: "10.32.0.0/12", table: 254, protocol: 2, scope: 253, dev: 7 },
      { dst: "198.18.0.0/24", table: 254, protocol: 2, scope: 253, dev: 1 },
    ];
    const o = rangeOverlaps(parseCidr("10.32.0.0/12"), routes, (dev) => dev === 7);
    expect(o.map((x) => x.key)).toEqual(["10.32.5.0/24"]);
    expect(o[0]!.reason).toBe("WeaveRangeOverlap");
  });
});
