/**
 * The sleeve's wire format (net/sleeve/frame.ts): round trips of every frame type, the
 * sealed layout checked against node:crypto directly, sealed frames that do not survive
 * tampering, replay, reordering past the window or truncation, and a bounded mutational
 * fuzz (fixed seed) in which garbage only ever gives a SleeveFrameError.
 */
import { describe, expect, test } from "bun:test";
import { createDecipheriv } from "node:crypto";
import {
  Check,
  checkFrame,
  decode,
  encodeData,
  encodeHeartbeat,
  HEADER_LEN,
  ipv4ToU32,
  open,
  parseKey,
  seal,
  SleeveFrameError,
  u32ToIpv4,
} from "../../net/sleeve/frame.ts";
import { ReplayWindow } from "../../net/sleeve/replay.ts";
import { Aead, aeadBackend } from "../../net/host/sleeve-aead.ts";
import { ptr } from "bun:ffi";

const KEY = parseKey(Buffer.alloc(32, 7).toString("base64"));
const OTHER = parseKey(Buffer.alloc(32, 8).toString("base64"));
const DST = "198.18.230.2";

/** An Ethernet frame: dst, src, type IPv4, then `n` bytes of a counting pattern. */
function ethFrame(n = 46): Uint8Array {
  const f = new Uint8Array(14 + n);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
  for (let i = 0; i < n; i++) f[14 + i] = i & 255;
  return f;
}

function frameError(f: () => unknown): SleeveFrameError {
  try {
    f();
  } catch (e) {
    if (e instanceof SleeveFrameError) return e;
    throw e;
  }
  throw new Error("no SleeveFrameError");
}

/** mulberry32: small, seeded, enough for a reproducible fuzz. */
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

describe("plain frames", () => {
  test("a data frame is the 8-byte header and the Ethernet frame, nothing else", () => {
    const f = ethFrame();
    const d = encodeData(DST, f);
    expect(d.length).toBe(HEADER_LEN + f.length);
    expect([...d.subarray(0, 8)]).toEqual([0x57, 1, 4, 0, 198, 18, 230, 2]);
    expect(decode(d)).toEqual({ type: "data", dst: DST, hops: 4, sealed: false, frame: f });
  });

  test("a full-size frame for a 1450 MTU makes a 1472-byte datagram: it fits where VXLAN's does", () => {
    expect(encodeData(DST, ethFrame(1450)).length).toBe(1500 - 20 - 8);
  });

  test("hops round-trip, and out-of-range hops are refused by field", () => {
    expect((decode(encodeData(DST, ethFrame(), 1)) as { hops: number }).hops).toBe(1);
    const e = frameError(() => encodeData(DST, ethFrame(), 256));
    expect(e.field).toBe("hops");
    expect(e.message).toContain("256");
  });

  test("ping and pong carry the sender's underlay address, a nonce and a timestamp", () => {
    const nonce = 0xfedcba9876543210n;
    for (const type of ["ping", "pong"] as const) {
      const b = encodeHeartbeat({ type, sender: "198.18.230.1", nonce, sentAtMs: 1_700_000_000_123 });
      expect(b.length).toBe(24);
      expect(decode(b)).toEqual({ type, sender: "198.18.230.1", hops: 4, nonce, sentAtMs: 1_700_000_000_123 });
    }
  });

  test("addresses convert both ways; a bad one is an error naming it", () => {
    expect(u32ToIpv4(ipv4ToU32("255.0.10.1"))).toBe("255.0.10.1");
    expect(ipv4ToU32("198.18.230.2")).toBe(0xc612e602);
    for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4.5", ""]) {
      const e = frameError(() => ipv4ToU32(bad));
      expect(e.field).toBe("address");
      expect(e.message).toContain(JSON.stringify(bad));
    }
  });
});

describe("refusals name the field and the value", () => {
  const d = () => encodeData(DST, ethFrame());
  const byte = (i: number, v: number) => (b: Uint8Array) => {
    b[i] = v;
    return b;
  };
  const cases: [string, (b: Uint8Array) => Uint8Array, string, string][] = [
    ["short", (b) => b.subarray(0, 5), "length", "5"],
    ["magic", byte(0, 0x42), "magic", "0x42"],
    ["type", byte(1, 9), "type", "9"],
    ["flags", byte(3, 0x80), "flags", "0x80"],
    ["data shorter than an Ethernet header", (b) => b.subarray(0, 8 + 13), "length", "21"],
    [
      "ping of the wrong length",
      () => encodeHeartbeat({ type: "ping", sender: DST, nonce: 1n, sentAtMs: 0 }).subarray(0, 23),
      "length",
      "23",
    ],
  ];
  for (const [name, mutate, field, value] of cases)
    test(name, () => {
      const e = frameError(() => decode(mutate(d())));
      expect(e.field).toBe(field as SleeveFrameError["field"]);
      expect(e.message).toContain(value);
    });

  test("checkFrame gives the same verdicts as numbers, at an offset", () => {
    const b = new Uint8Array(100);
    b.set(encodeData(DST, ethFrame(20)), 10);
    expect(checkFrame(b, 10, 8 + 34)).toBe(Check.ok);
    expect(checkFrame(b, 10, 7)).toBe(Check.short);
    expect(checkFrame(b, 11, 8 + 34)).toBe(Check.magic);
  });
});

describe("sealed frames", () => {
  test("layout: header, counter, AES-256-GCM with nonce 0000+counter and the header as additional data", () => {
    const f = ethFrame();
    const s = seal(KEY, 0x0102030405, DST, f);
    expect(s.length).toBe(8 + 8 + f.length + 16);
    expect([...s.subarray(0, 8)]).toEqual([0x57, 1, 4, 1, 198, 18, 230, 2]);
    expect([...s.subarray(8, 16)]).toEqual([0, 0, 0, 1, 2, 3, 4, 5]);
    const nonce = Buffer.concat([Buffer.alloc(4), Buffer.from(s.subarray(8, 16))]);
    const d = createDecipheriv("aes-256-gcm", KEY, nonce);
    d.setAAD(s.subarray(0, 8));
    d.setAuthTag(s.subarray(s.length - 16));
    const pt = Buffer.concat([d.update(s.subarray(16, s.length - 16)), d.final()]);
    expect([...pt]).toEqual([...f]);
  });

  test("round trip, with the window marking each counter once", () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 5; c++) {
      const f = ethFrame(50 + c);
      expect(open(KEY, seal(KEY, c, DST, f), w)).toEqual({ type: "data", dst: DST, hops: 4, sealed: false, frame: f });
    }
    expect(w.highest).toBe(4);
  });

  test("decode leaves it sealed: the counter and body, no plaintext", () => {
    const s = seal(KEY, 9, DST, ethFrame());
    const f = decode(s);
    expect(f).toMatchObject({ type: "data", sealed: true, counter: 9, dst: DST });
  });

  test("every single-byte change anywhere is refused by the tag (header included)", () => {
    const s = seal(KEY, 3, DST, ethFrame(30));
    for (let i = 0; i < s.length; i++) {
      const t = s.slice();
      t[i]! ^= 0x01;
      let err: unknown;
      try {
        open(KEY, t, new ReplayWindow());
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SleeveFrameError);
    }
  });

  test("the wrong key is a tag error; a failed tag does not mark the counter", () => {
    const w = new ReplayWindow();
    const s = seal(KEY, 1, DST, ethFrame());
    expect(frameError(() => open(OTHER, s, w)).field).toBe("tag");
    expect(open(KEY, s, w).frame).toEqual(ethFrame());
  });

  test("replay is refused; reordering inside the window is not; too old is refused", () => {
    const w = new ReplayWindow();
    const frames = [0, 1, 2, 3000, 2999, 1500, 500].map((c) => seal(KEY, c, DST, ethFrame()));
    open(KEY, frames[0]!, w);
    expect(frameError(() => open(KEY, frames[0]!, w)).field).toBe("counter");
    open(KEY, frames[2]!, w);
    open(KEY, frames[1]!, w);
    open(KEY, frames[3]!, w);
    open(KEY, frames[4]!, w);
    open(KEY, frames[5]!, w);
    const e = frameError(() => open(KEY, frames[6]!, w));
    expect(e.field).toBe("counter");
    expect(e.message).toContain("500");
  });

  test("truncation at every length is refused", () => {
    const s = seal(KEY, 5, DST, ethFrame(20));
    for (let n = 0; n < s.length; n++) expect(() => open(KEY, s.subarray(0, n))).toThrow(SleeveFrameError);
  });

  test("a plain frame is not opened as sealed; a counter above 2^53 is refused", () => {
    expect(frameError(() => open(KEY, encodeData(DST, ethFrame()))).field).toBe("flags");
    const s = seal(KEY, 1, DST, ethFrame());
    s[8] = 0xff;
    expect(frameError(() => decode(s)).field).toBe("counter");
    expect(frameError(() => seal(KEY, -1, DST, ethFrame())).field).toBe("counter");
  });

  test("a key must be 32 bytes", () => {
    expect(frameError(() => parseKey(Buffer.alloc(16).toString("base64"))).message).toContain("16 bytes");
  });
});

describe("the engine's in-place AEAD (net/host/sleeve-aead.ts) makes the same bytes", () => {
  test(`backend ${aeadBackend}: seal matches frame.ts's seal, open takes frame.ts's frames, a flipped bit is -1`, () => {
    const aead = new Aead(KEY);
    for (const [counter, n] of [
      [0, 46],
      [1, 1450],
      [2 ** 40 + 3, 100],
    ] as const) {
      const f = ethFrame(n);
      const want = seal(KEY, counter, DST, f);
      const buf = new Uint8Array(new ArrayBuffer(want.length + 64));
      const p = ptr(buf);
      buf.set(want.subarray(0, 8), 10);
      buf.set(f, 10 + 16);
      expect(aead.seal(buf, p, 10, f.length, counter)).toBe(want.length);
      expect([...buf.subarray(10, 10 + want.length)]).toEqual([...want]);
      expect(aead.open(buf, p, 10, want.length)).toBe(f.length);
      expect([...buf.subarray(26, 26 + f.length)]).toEqual([...f]);
      buf.set(want, 10);
      buf[10 + want.length - 1]! ^= 0x80;
      expect(aead.open(buf, p, 10, want.length)).toBe(-1);
      // The context is good for the next packet after a refusal.
      buf.set(want, 10);
      expect(aead.open(buf, p, 10, want.length)).toBe(f.length);
    }
    aead.free();
  });

  test("after full collections the scratch libcrypto writes into is still ours (it was freed: a segfault)", () => {
    Bun.gc(true);
    Bun.gc(true);
    const aead = new Aead(KEY);
    const f = ethFrame(1450);
    const want = seal(KEY, 9, DST, f);
    const buf = new Uint8Array(new ArrayBuffer(want.length + 64));
    const p = ptr(buf);
    // blocks of the scratch's size class, which a freed scratch's block would be handed out as
    const sameSize: ArrayBuffer[] = [];
    let sealed = 0;
    for (let i = 0; i < 2000; i++) {
      buf.set(want.subarray(0, 8), 10);
      buf.set(f, 26);
      if (aead.seal(buf, p, 10, f.length, 9) === want.length) sealed++;
      for (let j = 0; j < 50; j++) sameSize.push(new ArrayBuffer(32));
    }
    aead.free();
    expect(sealed).toBe(2000);
    expect(sameSize.length).toBe(100_000);
  });
});

describe("mutational fuzz (seed 6783)", () => {
  const random = rng(6783);
  const int = (n: number) => Math.floor(random() * n);
  const seeds = [
    encodeData(DST, ethFrame(60)),
    seal(KEY, 17, DST, ethFrame(60)),
    encodeHeartbeat({ type: "ping", sender: DST, nonce: 5n, sentAtMs: 12 }),
    encodeHeartbeat({ type: "pong", sender: DST, nonce: 5n, sentAtMs: 12 }),
  ];
  function mutate(b: Uint8Array): Uint8Array {
    let out = b.slice();
    const rounds = 1 + int(4);
    for (let r = 0; r < rounds; r++) {
      const op = int(6);
      if (op === 0 && out.length > 0) out[int(out.length)] = int(256);
      else if (op === 1 && out.length > 0) out[int(Math.min(out.length, 8))]! ^= 1 << int(8);
      else if (op === 2) out = out.subarray(0, int(out.length + 1)).slice();
      else if (op === 3) out = Uint8Array.from([...out, ...Array.from({ length: int(40) }, () => int(256))]);
      else if (op === 4) out = Uint8Array.from({ length: int(64) }, () => int(256));
      else if (out.length > 0) out[int(out.length)] = [0, 1, 2, 3, 0x57, 0xff][int(6)]!;
    }
    return out;
  }

  test("5000 mutants: decode and open return or throw SleeveFrameError, never anything else", () => {
    const kinds = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const m = mutate(seeds[int(seeds.length)]!);
      for (const attempt of [() => decode(m), () => open(KEY, m, new ReplayWindow())]) {
        try {
          const f = attempt();
          kinds.set("ok", (kinds.get("ok") ?? 0) + 1);
          // What decodes must encode back to the same bytes.
          if (f.type === "data" && !f.sealed && f.frame.length >= 14 && m[3] === 0)
            expect(encodeData(f.dst, f.frame, f.hops)).toEqual(m);
        } catch (e) {
          if (!(e instanceof SleeveFrameError)) throw e;
          expect(e.message).toMatch(/length|magic|type|flags|counter|tag|sealed/);
          kinds.set(e.field, (kinds.get(e.field) ?? 0) + 1);
        }
      }
    }
    // The mutants reach every kind of refusal, and some still decode.
    for (const k of ["ok", "length", "magic", "type", "flags", "tag"]) expect(kinds.get(k) ?? 0).toBeGreaterThan(0);
  });
});
