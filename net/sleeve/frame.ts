/**
 * The sleeve's wire format: what two agents put in a UDP datagram (port 6783) when VXLAN
 * cannot cross between them. All numbers big-endian.
 *
 *   0 magic 0x57 | 1 type (1 data, 2 ping, 3 pong) | 2 hops left | 3 flags (bit 0 sealed)
 *   4..7 an underlay IPv4: the destination peer (data) or the sender (ping, pong)
 *   data, plain:  header, Ethernet frame                    (overhead 8, as VXLAN's)
 *   data, sealed: header, counter (8), AES-256-GCM(frame), tag (16)
 *                 nonce = 4 zero bytes + counter, additional data = the header
 *   ping, pong:   header, nonce (8), timestamp in ms (8); a pong echoes both
 *
 * A plain frame that fits VXLAN fits the sleeve (pod MTU = underlay - 50); sealing adds 24
 * bytes more (pod MTU = underlay - 74), or the datagrams are fragmented on the underlay.
 *
 * Two layers: `checkFrame`, `sealInPlace` and `openInPlace` work on a buffer at an offset
 * and return numbers, for the engine's per-packet loop (no objects, no throws); `decode`,
 * `encodeData`, `seal`, `open` and friends build on them for everything else, and every
 * refusal there is a `SleeveFrameError` naming the field and the value.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import type { ReplayWindow } from "./replay.ts";

export const SLEEVE_PORT = 6783;
export const MAGIC = 0x57;
export const TYPE_DATA = 1;
export const TYPE_PING = 2;
export const TYPE_PONG = 3;
export const FLAG_SEALED = 1;
export const INITIAL_HOPS = 4;
export const HEADER_LEN = 8;
export const COUNTER_LEN = 8;
export const TAG_LEN = 16;
/** What sealing adds to a plain data frame. */
export const SEAL_OVERHEAD = COUNTER_LEN + TAG_LEN;
export const HEARTBEAT_LEN = HEADER_LEN + 16;
export const ETH_HEADER_LEN = 14;
/** Counters stay exact in a double; a sender stops long before (and rekeys). */
export const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

/** Why `checkFrame` refused a datagram (0 = well formed). */
export const Check = {
  ok: 0,
  short: 1,
  magic: 2,
  type: 3,
  flags: 4,
  length: 5,
  counter: 6,
} as const;
export type CheckCode = (typeof Check)[keyof typeof Check];

export type SleeveFrameField = "length" | "magic" | "type" | "flags" | "hops" | "counter" | "tag" | "address";

export class SleeveFrameError extends Error {
  constructor(
    readonly field: SleeveFrameField,
    readonly value: number | string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "SleeveFrameError";
  }
}

export function ipv4ToU32(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4) throw new SleeveFrameError("address", ip, `address ${JSON.stringify(ip)} is not an IPv4`);
  let n = 0;
  for (const p of parts) {
    const b = /^\d{1,3}$/.test(p) ? Number(p) : 256;
    if (b > 255) throw new SleeveFrameError("address", ip, `address ${JSON.stringify(ip)} is not an IPv4`);
    n = n * 256 + b;
  }
  return n;
}

export function u32ToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = v >>> 16;
  buf[off + 2] = v >>> 8;
  buf[off + 3] = v;
}

/** A 64-bit big-endian counter as a number, or -1 when it exceeds MAX_COUNTER. */
export function readCounter(buf: Uint8Array, off: number): number {
  const hi = readU32(buf, off);
  if (hi > 0x1fffff) return -1;
  return hi * 0x100000000 + readU32(buf, off + 4);
}

export function writeCounter(buf: Uint8Array, off: number, c: number): void {
  writeU32(buf, off, Math.floor(c / 0x100000000));
  writeU32(buf, off + 4, c >>> 0);
}

export function writeHeader(buf: Uint8Array, off: number, type: number, hops: number, flags: number, addr: number) {
  buf[off] = MAGIC;
  buf[off + 1] = type;
  buf[off + 2] = hops;
  buf[off + 3] = flags;
  writeU32(buf, off + 4, addr);
}

/**
 * Is the datagram at buf[off, off+len) well formed? Checks the header, the length its type
 * and flags require, and a sealed frame's counter range; not hops (a routing matter) nor
 * the tag (that takes the key).
 */
export function checkFrame(buf: Uint8Array, off: number, len: number): CheckCode {
  if (len < HEADER_LEN) return Check.short;
  if (buf[off] !== MAGIC) return Check.magic;
  const type = buf[off + 1]!;
  const flags = buf[off + 3]!;
  if (type === TYPE_DATA) {
    if ((flags & ~FLAG_SEALED) !== 0) return Check.flags;
    const min = HEADER_LEN + ETH_HEADER_LEN + (flags & FLAG_SEALED ? SEAL_OVERHEAD : 0);
    if (len < min) return Check.length;
    if (flags & FLAG_SEALED && readCounter(buf, off + HEADER_LEN) < 0) return Check.counter;
    return Check.ok;
  }
  if (type === TYPE_PING || type === TYPE_PONG) {
    if (flags !== 0) return Check.flags;
    return len === HEARTBEAT_LEN ? Check.ok : Check.length;
  }
  return Check.type;
}

const nonce = Buffer.alloc(12);

function asBuffer(buf: Uint8Array, off: number, len: number): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + off, len);
}

/**
 * Seal in place. At `off`: the 8-byte header (already written, flags with FLAG_SEALED),
 * 8 bytes of room for the counter, then the plaintext frame; room for the tag after it.
 * Returns the datagram's length.
 */
export function sealInPlace(key: Buffer, counter: number, buf: Uint8Array, off: number, frameLen: number): number {
  writeCounter(buf, off + HEADER_LEN, counter);
  nonce.fill(0, 0, 4);
  nonce.set(buf.subarray(off + HEADER_LEN, off + HEADER_LEN + COUNTER_LEN), 4);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(asBuffer(buf, off, HEADER_LEN));
  const at = off + HEADER_LEN + COUNTER_LEN;
  const ct = c.update(asBuffer(buf, at, frameLen));
  c.final();
  buf.set(ct, at);
  buf.set(c.getAuthTag(), at + frameLen);
  return HEADER_LEN + COUNTER_LEN + frameLen + TAG_LEN;
}

/**
 * Open the sealed datagram at buf[off, off+len) in place: the plaintext frame replaces
 * the ciphertext at off + 16. Returns its length, or -1 when the tag does not verify
 * (wrong key, or any byte of header, counter, ciphertext or tag changed).
 */
export function openInPlace(key: Buffer, buf: Uint8Array, off: number, len: number): number {
  const at = off + HEADER_LEN + COUNTER_LEN;
  const frameLen = len - HEADER_LEN - COUNTER_LEN - TAG_LEN;
  if (frameLen < 0) return -1;
  nonce.fill(0, 0, 4);
  nonce.set(buf.subarray(off + HEADER_LEN, at), 4);
  try {
    const d = createDecipheriv("aes-256-gcm", key, nonce);
    d.setAAD(asBuffer(buf, off, HEADER_LEN));
    d.setAuthTag(asBuffer(buf, at + frameLen, TAG_LEN));
    const pt = d.update(asBuffer(buf, at, frameLen));
    d.final();
    buf.set(pt, at);
    return frameLen;
  } catch {
    return -1;
  }
}

export type DataFrame = { type: "data"; dst: string; hops: number; sealed: false; frame: Uint8Array };
export type SealedDataFrame = {
  type: "data";
  dst: string;
  hops: number;
  sealed: true;
  counter: number;
  /** Ciphertext and tag, still sealed: `open` them with the key. */
  sealedBody: Uint8Array;
};
export type Heartbeat = { type: "ping" | "pong"; sender: string; hops: number; nonce: bigint; sentAtMs: number };
export type SleeveFrame = DataFrame | SealedDataFrame | Heartbeat;

/** The error `checkFrame`'s refusal stands for, naming the field and its value. */
export function checkError(code: Exclude<CheckCode, 0>, buf: Uint8Array): SleeveFrameError {
  const hex = (v: number) => `0x${v.toString(16).padStart(2, "0")}`;
  switch (code) {
    case Check.short:
      return new SleeveFrameError("length", buf.length, `length ${buf.length} is shorter than the 8-byte header`);
    case Check.magic:
      return new SleeveFrameError("magic", buf[0]!, `magic ${hex(buf[0]!)} is not ${hex(MAGIC)}`);
    case Check.type:
      return new SleeveFrameError("type", buf[1]!, `type ${buf[1]} is not 1 (data), 2 (ping) or 3 (pong)`);
    case Check.flags:
      return new SleeveFrameError("flags", buf[3]!, `flags ${hex(buf[3]!)} has bits type ${buf[1]} does not define`);
    case Check.length:
      return new SleeveFrameError("length", buf.length, `length ${buf.length} does not fit a type ${buf[1]} frame`);
    case Check.counter: {
      const hi = readU32(buf, HEADER_LEN);
      return new SleeveFrameError("counter", hi, `counter high word ${hi} is above 2^21-1`);
    }
  }
}

/** Parse a datagram; a sealed data frame comes back still sealed. Throws SleeveFrameError. */
export function decode(buf: Uint8Array): SleeveFrame {
  const code = checkFrame(buf, 0, buf.length);
  if (code !== Check.ok) throw checkError(code, buf);
  const hops = buf[2]!;
  const addr = u32ToIpv4(readU32(buf, 4));
  if (buf[1] !== TYPE_DATA) {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const type = buf[1] === TYPE_PING ? "ping" : "pong";
    const sentAtMs = Number(view.getBigUint64(16));
    return { type, sender: addr, hops, nonce: view.getBigUint64(8), sentAtMs };
  }
  if (!(buf[3]! & FLAG_SEALED))
    return { type: "data", dst: addr, hops, sealed: false, frame: buf.subarray(HEADER_LEN) };
  const counter = readCounter(buf, HEADER_LEN);
  return { type: "data", dst: addr, hops, sealed: true, counter, sealedBody: buf.subarray(HEADER_LEN + COUNTER_LEN) };
}

function checkHops(hops: number): void {
  if (!Number.isInteger(hops) || hops < 0 || hops > 255)
    throw new SleeveFrameError("hops", hops, `hops ${hops} is not 0..255`);
}

function checkFrameLength(frame: Uint8Array): void {
  if (frame.length < ETH_HEADER_LEN)
    throw new SleeveFrameError(
      "length",
      frame.length,
      `frame length ${frame.length} is shorter than an Ethernet header`,
    );
}

export function encodeData(dst: string, frame: Uint8Array, hops = INITIAL_HOPS): Uint8Array {
  checkHops(hops);
  checkFrameLength(frame);
  const out = new Uint8Array(HEADER_LEN + frame.length);
  writeHeader(out, 0, TYPE_DATA, hops, 0, ipv4ToU32(dst));
  out.set(frame, HEADER_LEN);
  return out;
}

export function encodeHeartbeat(h: Omit<Heartbeat, "hops"> & { hops?: number }): Uint8Array {
  const hops = h.hops ?? INITIAL_HOPS;
  checkHops(hops);
  const out = new Uint8Array(HEARTBEAT_LEN);
  writeHeader(out, 0, h.type === "ping" ? TYPE_PING : TYPE_PONG, hops, 0, ipv4ToU32(h.sender));
  const view = new DataView(out.buffer);
  view.setBigUint64(8, BigInt.asUintN(64, h.nonce));
  view.setBigUint64(16, BigInt(Math.max(0, Math.floor(h.sentAtMs))));
  return out;
}

/** 32 bytes, from the table's base64. */
export function parseKey(b64: string): Buffer {
  const key = Buffer.from(b64, "base64");
  if (key.length !== 32) throw new SleeveFrameError("length", key.length, `key is ${key.length} bytes, not 32`);
  return key;
}

/** A sealed data frame of `frame` to `dst` under `key` with this counter (never reuse one with a key). */
export function seal(key: Buffer, counter: number, dst: string, frame: Uint8Array, hops = INITIAL_HOPS): Uint8Array {
  checkHops(hops);
  checkFrameLength(frame);
  if (!Number.isSafeInteger(counter) || counter < 0)
    throw new SleeveFrameError("counter", counter, `counter ${counter} is not 0..2^53-1`);
  const out = new Uint8Array(HEADER_LEN + SEAL_OVERHEAD + frame.length);
  writeHeader(out, 0, TYPE_DATA, hops, FLAG_SEALED, ipv4ToU32(dst));
  out.set(frame, HEADER_LEN + COUNTER_LEN);
  sealInPlace(key, counter, out, 0, frame.length);
  return out;
}

/**
 * Check and open a sealed data frame: its counter against the replay window, its tag
 * under `key`, and only then mark the counter seen. Returns the frame (a copy).
 */
export function open(key: Buffer, datagram: Uint8Array, window?: ReplayWindow): DataFrame {
  const f = decode(datagram);
  if (f.type !== "data" || !f.sealed) throw new SleeveFrameError("flags", datagram[3] ?? 0, "frame is not sealed");
  if (window && !window.check(f.counter))
    throw new SleeveFrameError("counter", f.counter, `counter ${f.counter} was seen already or is too old`);
  const copy = datagram.slice();
  const n = openInPlace(key, copy, 0, copy.length);
  if (n < 0) throw new SleeveFrameError("tag", f.counter, `tag of counter ${f.counter} does not verify`);
  window?.accept(f.counter);
  const at = HEADER_LEN + COUNTER_LEN;
  return { type: "data", dst: f.dst, hops: f.hops, sealed: false, frame: copy.slice(at, at + n) };
}
