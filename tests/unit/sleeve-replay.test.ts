/**
 * The sleeve's replay window (net/sleeve/replay.ts): each counter once, reordering inside
 * 2016 below the highest, nothing older, slides of any size, check without side effects,
 * and a model comparison over a seeded random walk of counters.
 */
import { describe, expect, test } from "bun:test";
import { REPLAY_WINDOW, ReplayWindow } from "../../net/sleeve/replay.ts";

describe("ReplayWindow", () => {
  test("counter 0 first, each counter once", () => {
    const w = new ReplayWindow();
    expect(w.accept(0)).toBe(true);
    expect(w.accept(0)).toBe(false);
    expect(w.accept(1)).toBe(true);
    expect(w.accept(1)).toBe(false);
  });

  test("reordered counters inside the window are accepted once each", () => {
    const w = new ReplayWindow();
    for (const c of [10, 3, 7, 9, 0, 4]) expect(w.accept(c)).toBe(true);
    for (const c of [10, 3, 7, 9, 0, 4]) expect(w.accept(c)).toBe(false);
    expect(w.highest).toBe(10);
  });

  test("the edge: exactly REPLAY_WINDOW below the top is accepted, one more is too old", () => {
    const w = new ReplayWindow();
    const top = 5000;
    w.accept(top);
    expect(REPLAY_WINDOW).toBe(2016);
    expect(w.check(top - REPLAY_WINDOW)).toBe(true);
    expect(w.check(top - REPLAY_WINDOW - 1)).toBe(false);
    expect(w.accept(top - REPLAY_WINDOW - 1)).toBe(false);
  });

  test("a big jump clears the whole ring: counters seen long ago do not linger as bits", () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 64; c++) w.accept(c);
    w.accept(1_000_000);
    for (let c = 1_000_000 - 100; c < 1_000_000; c++) expect(w.accept(c)).toBe(true);
    expect(w.accept(63)).toBe(false);
  });

  test("check changes nothing", () => {
    const w = new ReplayWindow();
    expect(w.check(100)).toBe(true);
    expect(w.check(100)).toBe(true);
    expect(w.highest).toBe(0);
    expect(w.accept(100)).toBe(true);
  });

  test("negative, fractional and unsafe counters are refused", () => {
    const w = new ReplayWindow();
    for (const c of [-1, 1.5, Number.NaN, 2 ** 53]) expect(w.accept(c)).toBe(false);
    expect(w.accept(2 ** 53 - 1)).toBe(true);
  });

  test("against a model (a Set and the window rule) over 20000 seeded counters", () => {
    let s = 2048;
    const random = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
    const w = new ReplayWindow();
    const seen = new Set<number>();
    let top = 0;
    let base = 0;
    for (let i = 0; i < 20000; i++) {
      // Mostly a stream moving forward with jitter, sometimes a jump, sometimes far back.
      const r = random();
      if (r < 0.02) base += Math.floor(random() * 5000);
      else base += 1;
      const c = Math.max(0, base + Math.floor((random() - 0.7) * (r > 0.98 ? 6000 : 80)));
      const want = !seen.has(c) && (c > top || top - c <= REPLAY_WINDOW);
      expect(w.accept(c)).toBe(want);
      if (want) {
        seen.add(c);
        top = Math.max(top, c);
      }
    }
  });
});
