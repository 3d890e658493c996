/**
 * Mesh wire format. A connection starts with an 8-byte preamble, "weave\0" and the
 * lowest and highest protocol versions the sender speaks; then length-prefixed frames:
 * a 4-byte big-endian length, one type byte, the payload. Anything else is refused.
 *
 * Version 2 adds, right after the preambles, a Mode frame saying whether the sender
 * encrypts (channel.ts); when both do, the Noise handshake runs in Noise frames, and
 * every later frame travels sealed (sealed.ts).
 */
export const PREAMBLE_MAGIC = "weave\0";
export const PROTOCOL_MIN = 1;
export const PROTOCOL_MAX = 2;
/** The first version with a Mode frame, so the first that can encrypt. */
export const PROTOCOL_MODES = 2;
export const MAX_FRAME = 16 << 20;

/**
 * Hello: who we are (JSON). Gossip: full entry lines (text). Digest: a key for every
 * entry we know (sent on connect and periodically); Announce: keys of news. A key is
 * 14 bytes, the 48-bit peer name and the entry's version as a float64, so that the most
 * frequent frames are read without making a string. Request: 6-byte names whose entries
 * we want. Heartbeat: nothing. Mode (version 2): one byte, 0 plaintext, 1 encrypted.
 * Noise: one handshake message.
 */
export const FrameType = {
  Hello: 0x48,
  Gossip: 0x47,
  Digest: 0x44,
  Announce: 0x41,
  Request: 0x52,
  Heartbeat: 0x42,
  Mode: 0x4d,
  Noise: 0x4e,
} as const;

const enc = new TextEncoder();
const dec = new TextDecoder();

export function preamble(min = PROTOCOL_MIN, max = PROTOCOL_MAX): Uint8Array {
  return Uint8Array.from([...enc.encode(PREAMBLE_MAGIC), min, max]);
}

export function encodeFrame(type: number, payload: string | Uint8Array = ""): Uint8Array {
  const body = typeof payload === "string" ? enc.encode(payload) : payload;
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(0, body.length + 1);
  out[4] = type;
  out.set(body, 5);
  return out;
}

export class ProtocolError extends Error {}

export type Frame = { type: number; payload: Uint8Array; text(): string };

export function frameOf(type: number, payload: Uint8Array): Frame {
  return { type, payload, text: () => dec.decode(payload) };
}

export const PREAMBLE_BYTES = 8;
const EMPTY = new Uint8Array(0);

/** A whole preamble -> the sender's version range; throws ProtocolError if it is not one. */
export function readPreamble(bytes: Uint8Array): { min: number; max: number } {
  if (dec.decode(bytes.subarray(0, 6)) !== PREAMBLE_MAGIC) throw new ProtocolError("not a weave peer (bad preamble)");
  return { min: bytes[6]!, max: bytes[7]! };
}

/**
 * Cuts a byte stream into a preamble and then length-prefixed units, one at a time, so
 * that the reader can change how it reads the next unit (plain, handshake, sealed)
 * after each one. What it returns are views: use them before the next `push`; `done`
 * copies the incomplete tail, so the transport may reuse its buffers.
 */
export class StreamCutter {
  private buf: Uint8Array = EMPTY;
  private off = 0;

  push(chunk: Uint8Array): void {
    if (this.off === this.buf.length) {
      this.buf = chunk;
    } else {
      const rest = this.buf.subarray(this.off);
      this.buf = new Uint8Array(rest.length + chunk.length);
      this.buf.set(rest);
      this.buf.set(chunk, rest.length);
    }
    this.off = 0;
  }

  /** The preamble, once all 8 bytes are here; a stream that cannot be one fails at once. */
  preamble(): Uint8Array | undefined {
    const have = this.buf.subarray(this.off, this.off + PREAMBLE_BYTES);
    if (!PREAMBLE_MAGIC.startsWith(dec.decode(have.subarray(0, 6))))
      throw new ProtocolError("not a weave peer (bad preamble)");
    if (have.length < PREAMBLE_BYTES) return undefined;
    this.off += PREAMBLE_BYTES;
    return have;
  }

  /** The body of the next unit (what follows its 4-byte length), once it is all here. */
  unit(max: number): Uint8Array | undefined {
    const b = this.buf;
    const off = this.off;
    if (b.length - off < 4) return undefined;
    const len = ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
    if (len < 1 || len > max) throw new ProtocolError(`frame of ${len} bytes is outside 1..${max}`);
    if (b.length - off < 4 + len) return undefined;
    this.off = off + 4 + len;
    return b.subarray(off + 4, off + 4 + len);
  }

  /** Keep only the incomplete tail, copied. */
  done(): void {
    this.buf = this.off === this.buf.length ? EMPTY : this.buf.slice(this.off);
    this.off = 0;
  }
}

/** The highest version both ranges share, or undefined. */
export function negotiate(a: { min: number; max: number }, b: { min: number; max: number }): number | undefined {
  const v = Math.min(a.max, b.max);
  return v >= Math.max(a.min, b.min) ? v : undefined;
}

export const KEY_BYTES = 14;

/** Digest and announce payloads: (name number, version) pairs. */
export function encodeKeys(keys: { num: number; version: number }[]): Uint8Array {
  const out = new Uint8Array(keys.length * KEY_BYTES);
  const dv = new DataView(out.buffer);
  keys.forEach((k, i) => {
    dv.setUint16(i * KEY_BYTES, Math.floor(k.num / 2 ** 32));
    dv.setUint32(i * KEY_BYTES + 2, k.num >>> 0);
    dv.setFloat64(i * KEY_BYTES + 6, k.version);
  });
  return out;
}

export function encodeNames(nums: number[]): Uint8Array {
  const out = new Uint8Array(nums.length * 6);
  const dv = new DataView(out.buffer);
  nums.forEach((n, i) => {
    dv.setUint16(i * 6, Math.floor(n / 2 ** 32));
    dv.setUint32(i * 6 + 2, n >>> 0);
  });
  return out;
}

/** Read 48-bit names at `width`-byte strides; throws ProtocolError on a ragged payload. */
export function readNum(dv: DataView, off: number): number {
  return dv.getUint16(off) * 2 ** 32 + dv.getUint32(off + 2);
}

export function checkStride(payload: Uint8Array, width: number, what: string): DataView {
  if (payload.length % width !== 0)
    throw new ProtocolError(`${what} of ${payload.length} bytes is not a multiple of ${width}`);
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}
