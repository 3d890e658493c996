/**
 * Mesh wire format. A connection starts with an 8-byte preamble, "weave\0" and the
 * lowest and highest protocol versions the sender speaks; then length-prefixed frames:
 * a 4-byte big-endian length, one type byte, the payload. Anything else is refused.
 */

export const PREAMBLE_MAGIC = "weave\0";
export const PROTOCOL_MIN = 1;
export const PROTOCOL_MAX = 1;
export const MAX_FRAME = 16 << 20;

/**
 * Hello: who we are (JSON). Gossip: full entry lines (text). Digest: a key for every
 * entry we know (sent on connect and periodically); Announce: keys of news. A key is
 * 14 bytes, the 48-bit peer name and the entry's version as a float64, so that the most
 * frequent frames are read without making a string. Request: 6-byte names whose entries
 * we want. Heartbeat: nothing.
 */
export const FrameType = {
  Hello: 0x48,
  Gossip: 0x47,
  Digest: 0x44,
  Announce: 0x41,
  Request: 0x52,
  Heartbeat: 0x42,
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

/** Reassembles frames from a byte stream; throws ProtocolError on a bad preamble or frame. */
export class FrameReader {
  private buf = new Uint8Array(0);
  private gotPreamble = false;
  /** The peer's protocol version range, once its preamble has arrived. */
  versions?: { min: number; max: number };

  /**
   * Frames complete in `chunk` (plus what was left over). Payloads may be views into
   * `chunk`: read them before the next push. Only an incomplete tail is copied.
   */
  push(chunk: Uint8Array): Frame[] {
    let buf = chunk;
    if (this.buf.length) {
      buf = new Uint8Array(this.buf.length + chunk.length);
      buf.set(this.buf);
      buf.set(chunk, this.buf.length);
    }
    const out: Frame[] = [];
    if (!this.gotPreamble) {
      if (buf.length < 8) {
        if (!PREAMBLE_MAGIC.startsWith(dec.decode(buf.subarray(0, Math.min(6, buf.length)))))
          throw new ProtocolError("not a weave peer (bad preamble)");
        this.buf = buf.slice();
        return out;
      }
      if (dec.decode(buf.subarray(0, 6)) !== PREAMBLE_MAGIC) throw new ProtocolError("not a weave peer (bad preamble)");
      this.versions = { min: buf[6]!, max: buf[7]! };
      this.gotPreamble = true;
      buf = buf.subarray(8);
    }
    let off = 0;
    while (buf.length - off >= 4) {
      const len = ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
      if (len < 1 || len > MAX_FRAME) throw new ProtocolError(`frame of ${len} bytes is outside 1..${MAX_FRAME}`);
      if (buf.length - off < 4 + len) break;
      const payload = buf.subarray(off + 5, off + 4 + len);
      out.push({ type: buf[off + 4]!, payload, text: () => dec.decode(payload) });
      off += 4 + len;
    }
    this.buf = off === buf.length ? EMPTY : buf.slice(off);
    return out;
  }
}

const EMPTY = new Uint8Array(0);

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
