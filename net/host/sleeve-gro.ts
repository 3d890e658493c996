/**
 * Writing frames to the TAP, with TCP segments coalesced (a userspace GRO).
 *
 * Why: each frame written to a TAP goes alone through the bridge, the pod's veth and the
 * pod's TCP receive; that walk was half of all the CPU the sleeve used. The TAP is opened
 * with IFF_VNET_HDR, so a write may carry a virtio_net_hdr saying "this is a TSO frame":
 * consecutive segments of one TCP flow from one receive batch become a single frame of up
 * to 64 KiB, which the kernel carries as one GSO packet (and splits again only if it
 * leaves through a device that needs it).
 *
 * What merges (as Linux's tcp_gro_receive): IPv4 without options or fragments, TCP with
 * only ACK (and PSH) set and a payload; the same MACs, addresses, ports, TOS, TTL, ack
 * number, window and options; each segment's sequence number the previous one's end, each
 * payload as long as the first (a shorter one, or PSH, ends the run). The merged frame
 * keeps the first segment's headers with the total length, a new IP checksum, PSH if any
 * had it, and the TCP checksum left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM): the pod's
 * kernel takes it as verified. The segments' own TCP checksums are not checked: the UDP
 * checksum (and, sealed, the tag) covered them on the way. Everything else is written as
 * it came, after whatever was pending, so frames stay in order.
 */
import { ptr } from "bun:ffi";
import type { LoopContext } from "./sleeve-loop.ts";
import { DROP, ST_RX_BYTES, ST_RX_FRAMES } from "./sleeve-shared.ts";
import { stable, sys } from "./sleeve-sys.ts";

/** struct virtio_net_hdr, before every frame read from or written to the TAP. */
export const VNET_HDR_LEN = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
const ETH = 14;
const IP = ETH;
const TCP = ETH + 20;
const MAX_MERGED = 65535 - 1024;

function sum16(buf: Uint8Array, from: number, to: number, acc: number): number {
  for (let i = from; i < to; i += 2) acc += (buf[i]! << 8) | buf[i + 1]!;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

export class TapWriter {
  private readonly out: Uint8Array;
  private readonly outPtr: number;
  private readonly vnet: DataView;
  /** Segments in `out` (0: nothing pending), its frame length, the payload size each must have. */
  private segs = 0;
  private frameLen = 0;
  private mss = 0;
  private hdrLen = 0;
  private nextSeq = 0;
  private closed = false;
  private psh = false;
  /** The Ethernet bytes of the segments as they came (for the stats). */
  private bytes = 0;

  constructor(
    private readonly ctx: LoopContext,
    private readonly tap: number,
  ) {
    this.out = stable(Uint8Array, VNET_HDR_LEN + 65536);
    this.outPtr = ptr(this.out);
    this.vnet = new DataView(this.out.buffer, 0, VNET_HDR_LEN);
  }

  /** The frame at buf[off, off+len), for the TAP; buf has VNET_HDR_LEN bytes of room before off. */
  push(buf: Uint8Array, bufPtr: number, off: number, len: number): void {
    const payload = this.tcpPayload(buf, off, len);
    if (payload > 0) {
      if (this.segs > 0 && this.joins(buf, off, payload)) {
        sys.memcpy(this.outPtr + VNET_HDR_LEN + this.frameLen, bufPtr + off + len - payload, payload);
        this.frameLen += payload;
        this.segs++;
        this.bytes += len;
        this.nextSeq = (this.nextSeq + payload) >>> 0;
        const pshHere = (buf[off + TCP + 13]! & 0x08) !== 0;
        this.psh ||= pshHere;
        this.closed = payload < this.mss || pshHere;
        return;
      }
      this.flush();
      sys.memcpy(this.outPtr + VNET_HDR_LEN, bufPtr + off, len);
      this.segs = 1;
      this.bytes = len;
      this.frameLen = len;
      this.mss = payload;
      this.hdrLen = len - payload;
      this.nextSeq = (readU32(buf, off + TCP + 4) + payload) >>> 0;
      this.psh = (buf[off + TCP + 13]! & 0x08) !== 0;
      this.closed = this.psh;
      return;
    }
    this.flush();
    buf.fill(0, off - VNET_HDR_LEN, off);
    if (this.write(bufPtr + off - VNET_HDR_LEN, len)) this.counted(1, len);
  }

  /** Write what is pending: one frame as it was, or the merged TSO frame. */
  flush(): void {
    if (this.segs === 0) return;
    const o = VNET_HDR_LEN;
    const b = this.out;
    b.fill(0, 0, VNET_HDR_LEN);
    if (this.segs > 1) {
      const ipLen = this.frameLen - ETH;
      b[o + IP + 2] = ipLen >> 8;
      b[o + IP + 3] = ipLen & 255;
      b[o + IP + 10] = 0;
      b[o + IP + 11] = 0;
      const ipSum = ~fold(sum16(b, o + IP, o + IP + 20, 0)) & 0xffff;
      b[o + IP + 10] = ipSum >> 8;
      b[o + IP + 11] = ipSum & 255;
      if (this.psh) b[o + TCP + 13]! |= 0x08;
      // Partial TCP checksum: the pseudo-header's sum, not complemented, for the whole length.
      const tcpLen = ipLen - 20;
      const pseudo = fold(sum16(b, o + IP + 12, o + IP + 20, 6 + tcpLen));
      b[o + TCP + 16] = pseudo >> 8;
      b[o + TCP + 17] = pseudo & 255;
      const v = this.vnet;
      v.setUint8(0, VIRTIO_NET_HDR_F_NEEDS_CSUM);
      v.setUint8(1, VIRTIO_NET_HDR_GSO_TCPV4);
      v.setUint16(2, this.hdrLen, true);
      v.setUint16(4, this.mss, true);
      v.setUint16(6, TCP, true);
      v.setUint16(8, 16, true);
    }
    const segs = this.segs;
    this.segs = 0;
    if (this.write(this.outPtr, this.frameLen)) this.counted(segs, this.bytes);
    else for (let i = 1; i < segs; i++) this.ctx.drop(DROP["tap-write-failed"]);
  }

  private counted(frames: number, bytes: number): void {
    this.ctx.count(ST_RX_FRAMES, frames);
    this.ctx.count(ST_RX_BYTES, bytes);
  }

  private write(p: number, frameLen: number): boolean {
    if (sys.write(this.tap, p, VNET_HDR_LEN + frameLen) >= 0) return true;
    this.ctx.drop(DROP["tap-write-failed"]);
    return false;
  }

  /** The TCP payload length of a frame that may merge, else 0. */
  private tcpPayload(buf: Uint8Array, off: number, len: number): number {
    if (len < TCP + 20 || buf[off + 12] !== 0x08 || buf[off + 13] !== 0x00) return 0;
    if (
      buf[off + IP] !== 0x45 ||
      buf[off + IP + 9] !== 6 ||
      (buf[off + IP + 6]! & 0x3f) !== 0 ||
      buf[off + IP + 7] !== 0
    )
      return 0;
    if ((buf[off + IP + 2]! << 8) + buf[off + IP + 3]! !== len - ETH) return 0;
    const flags = buf[off + TCP + 13]!;
    if ((flags & ~0x18) !== 0 || (flags & 0x10) === 0) return 0;
    const payload = len - TCP - (buf[off + TCP + 12]! >> 4) * 4;
    return Math.max(payload, 0);
  }

  /** Does this segment continue the pending run? */
  private joins(buf: Uint8Array, off: number, payload: number): boolean {
    if (this.closed || payload > this.mss || this.frameLen + payload > MAX_MERGED) return false;
    if (readU32(buf, off + TCP + 4) !== this.nextSeq) return false;
    const o = VNET_HDR_LEN;
    const b = this.out;
    // MACs; TOS; TTL, protocol; addresses; ports; ack; data offset; window; options.
    for (let i = 0; i < 12; i++) if (b[o + i] !== buf[off + i]) return false;
    if (b[o + IP + 1] !== buf[off + IP + 1] || b[o + IP + 8] !== buf[off + IP + 8]) return false;
    for (let i = IP + 12; i < TCP + 4; i++) if (b[o + i] !== buf[off + i]) return false;
    for (let i = TCP + 8; i < TCP + 13; i++) if (b[o + i] !== buf[off + i]) return false;
    for (let i = TCP + 14; i < TCP + 16; i++) if (b[o + i] !== buf[off + i]) return false;
    for (let i = TCP + 20; i < this.hdrLen; i++) if (b[o + i] !== buf[off + i]) return false;
    return true;
  }
}

function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}
