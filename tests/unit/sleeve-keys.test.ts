/**
 * The sleeve's per-key state over many connections: counter slots (net/host/sleeve.ts),
 * replay windows and cipher contexts (net/host/sleeve-table.ts). A key lives while it is
 * in the table or in the live keys (its connection lives); a dead key's state goes, and
 * its counter slot serves a new key without any key drawing a number twice. Nothing here
 * starts the workers or opens a TAP: setTable and compileTable are pure bookkeeping.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Sleeve } from "../../net/host/sleeve.ts";
import type { Aead } from "../../net/host/sleeve-aead.ts";
import { COUNTER_SLOTS, COUNTER_WORDS } from "../../net/host/sleeve-shared.ts";
import { compileTable, serializeTable, type SleeveTable } from "../../net/host/sleeve-table.ts";
import type { ReplayWindow } from "../../net/sleeve/replay.ts";

const key = (name: string) => createHash("sha256").update(`sleeve-keys ${name}`).digest("base64");

/** A sealed table with one neighbour per send key (receive key: the send key's name + "r"). */
function table(sendKeys: string[], liveKeys?: string[]): SleeveTable {
  return {
    self: "198.18.0.1",
    neighbours: sendKeys.map((k, i) => ({ ip: `198.18.1.${i + 1}`, sendKey: key(k), recvKey: key(`${k}r`) })),
    routes: [],
    macs: [],
    flood: [],
    pingFrom: [],
    sealed: true,
    ...(liveKeys ? { liveKeys: liveKeys.map(key) } : {}),
  };
}

/** The engine's bookkeeping, read as the workers see it (private fields, for this test only). */
function insides(s: Sleeve) {
  const i = s as unknown as { slots: Map<string, number>; countersBuf: SharedArrayBuffer };
  const c = new Int32Array(i.countersBuf);
  const slot = (k: string) => i.slots.get(key(k));
  return {
    slot,
    slots: () => i.slots.size,
    counter: (k: string) => c[slot(k)! * COUNTER_WORDS]!,
    /** A worker drawing numbers under k's key up to n. */
    drawTo: (k: string, n: number) => {
      c[slot(k)! * COUNTER_WORDS] = n;
    },
  };
}

describe("sleeve counter slots", () => {
  test(`more than ${COUNTER_SLOTS} connections over the engine's life: dead keys' slots are reused`, () => {
    const s = new Sleeve({ tap: "unused", log: () => {} });
    const seen = insides(s);
    for (let gen = 0; gen < COUNTER_SLOTS + 1000; gen++) s.setTable(table([`g${gen}`]));
    expect(seen.slots()).toBe(1);
  });

  test("a reused slot's counter is raised to the highest of all slots; a key that leaves the table while live goes on", () => {
    const s = new Sleeve({ tap: "unused", log: () => {} });
    const seen = insides(s);
    s.setTable(table(["k1", "k2"]));
    seen.drawTo("k1", 1000);
    seen.drawTo("k2", 5000);
    const slotOfK1 = seen.slot("k1");
    // k1's connection ends: its slot is free; the next new key takes it, above k2's 5000
    s.setTable(table(["k2"]));
    expect(seen.slot("k1")).toBeUndefined();
    s.setTable(table(["k2", "k3"]));
    expect(seen.slot("k3")).toBe(slotOfK1);
    expect(seen.counter("k3")).toBe(5000);
    // k2 leaves the table but its connection lives: same slot, same counter when it is back
    const slotOfK2 = seen.slot("k2");
    s.setTable(table(["k3"], ["k2"]));
    s.setTable(table(["k3"], ["k2"]));
    s.setTable(table(["k2", "k3"]));
    expect(seen.slot("k2")).toBe(slotOfK2);
    expect(seen.counter("k2")).toBe(5000);
  });

  test("a key wrongly taken for dead that comes back draws above every number it drew", () => {
    const s = new Sleeve({ tap: "unused", log: () => {} });
    const seen = insides(s);
    s.setTable(table(["k1", "k2"]));
    seen.drawTo("k1", 7000);
    const slotOfK2 = seen.slot("k2");
    s.setTable(table(["k2"]));
    s.setTable(table(["k2", "k3"]));
    s.setTable(table(["k3"]));
    // back on a slot it never drew from (k2's, at 0): raised to k3's, which took over k1's 7000
    s.setTable(table(["k1", "k3"]));
    expect(seen.slot("k1")).toBe(slotOfK2);
    expect(seen.counter("k1")).toBe(7000);
  });
});

describe("worker tables: replay windows and cipher contexts", () => {
  test("kept while a key is in the table or live, dropped once it is dead", () => {
    const windows = new Map<string, ReplayWindow>();
    const aeads = new Map<string, Aead>();
    const compile = (t: SleeveTable) =>
      compileTable(
        serializeTable(t, () => 0),
        6783,
        windows,
        aeads,
      );
    compile(table(["k1", "k2"]));
    const w1 = windows.get(key("k1r"));
    w1!.accept(41);
    expect([...windows.keys()].sort()).toEqual([key("k1r"), key("k2r")].sort());
    expect(aeads.size).toBe(4);
    compile(table(["k2"], ["k1", "k1r"]));
    expect(windows.get(key("k1r"))).toBe(w1!);
    compile(table(["k1", "k2"]));
    expect(windows.get(key("k1r"))!.check(41)).toBe(false);
    compile(table(["k2"]));
    expect([...windows.keys()]).toEqual([key("k2r")]);
    expect([...aeads.keys()].sort()).toEqual([key("k2"), key("k2r")].sort());
  });
});
