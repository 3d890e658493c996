/**
 * The sleeve's TX loop (a worker): read frames from the TAP, pick the peer by destination
 * MAC (or every flood peer for broadcast, multicast and unknown unicast), write the header (and seal) in
 * place, and send. When the TAP has nothing, poll(2) it for at most 100 ms, so the loop
 * notices a stop or a new table without ever yielding to an event loop.
 *
 * Batching: frames are read until the TAP is empty (never waiting for more), and a run of
 * datagrams to the same neighbour of the same length (the last may be shorter) goes out
 * in one sendmsg with UDP GSO (UDP_SEGMENT): one trip through the UDP/IP stack and the
 * underlay device for up to 64 datagrams instead of one each, the datagrams on the wire
 * unchanged. The kernel cost per datagram is what limits the sleeve (the loop's own JS is
 * a few percent), so this is where the speed comes from. A kernel that refuses GSO gets
 * the datagrams one sendto each from then on.
 */
import { ptr } from "bun:ffi";
import { ETH_HEADER_LEN, INITIAL_HOPS, TAG_LEN } from "../sleeve/frame.ts";
import { VNET_HDR_LEN } from "./sleeve-gro.ts";
import { HEADROOM, type LoopContext, MAX_FRAME } from "./sleeve-loop.ts";
import { DROP, ST_TX_BYTES, ST_TX_FRAMES } from "./sleeve-shared.ts";
import {
  EAGAIN,
  EINTR,
  EINVAL,
  EMSGSIZE,
  errno,
  POLLIN,
  setU64,
  SOL_UDP,
  pinned,
  stable,
  strerror,
  sys,
  UDP_SEGMENT,
} from "./sleeve-sys.ts";
import { macAt, type Neighbour, type Target } from "./sleeve-table.ts";

const MAX_SEGS = 64;
/** A GSO send's payload stays under the 64 KiB of one IP packet. */
const MAX_GSO_BYTES = 65000;
const POOL = 1 << 20;

export function runTx(ctx: LoopContext): void {
  const tap = ctx.init.tapFd;
  const buf = stable(Uint8Array, POOL);
  const bufPtr = ptr(buf);
  // A flooded frame's plaintext, put back before each copy after a sealed one.
  const spare = pinned(Uint8Array, MAX_FRAME);
  const sparePtr = ptr(spare);
  const pollIn = stable(Int32Array, 8);
  const pollInPtr = ptr(pollIn);

  // One sendmsg: msghdr (7 u64 slots), its iovecs, a cmsg carrying UDP_SEGMENT.
  const iov = stable(Uint32Array, MAX_SEGS * 16);
  const msg = stable(Uint32Array, 56);
  const cmsg = stable(Uint8Array, 24);
  const cmsgView = new DataView(cmsg.buffer);
  setU64(new Uint32Array(cmsg.buffer), 0, 18); // cmsg_len = CMSG_LEN(sizeof(u16))
  cmsgView.setInt32(8, SOL_UDP, true);
  cmsgView.setInt32(12, UDP_SEGMENT, true);
  setU64(msg, 2, ptr(iov));
  setU64(msg, 4, ptr(cmsg));
  setU64(msg, 5, cmsg.length);
  const msgPtr = ptr(msg);

  // The batch: datagrams at offs[i] of lens[i] bytes (frameLens[i] of Ethernet) to `to`.
  const offs = new Int32Array(MAX_SEGS);
  const lens = new Int32Array(MAX_SEGS);
  const frameLens = new Int32Array(MAX_SEGS);
  let count = 0;
  let bytes = 0;
  let closed = false;
  let to: Neighbour | null = null;
  let pos = 0;
  let gso = ctx.init.gso;

  const sent = (from: number, n: number) => {
    let b = 0;
    for (let i = from; i < from + n; i++) b += frameLens[i]!;
    ctx.count(ST_TX_FRAMES, n);
    ctx.count(ST_TX_BYTES, b);
  };

  const flush = (): void => {
    if (count === 1 || (count > 1 && !gso)) {
      for (let i = 0; i < count; i++) if (ctx.sendTo(bufPtr + offs[i]!, lens[i]!, to!.saPtr)) sent(i, 1);
    } else if (count > 1) {
      for (let i = 0; i < count; i++) {
        setU64(iov, i * 2, bufPtr + offs[i]!);
        setU64(iov, i * 2 + 1, lens[i]!);
      }
      setU64(msg, 0, to!.saPtr);
      msg[2] = 16;
      setU64(msg, 3, count);
      cmsgView.setUint16(16, lens[0]!, true);
      const e = ctx.sendMsg(msgPtr);
      if (e === 0) sent(0, count);
      else if (e === EAGAIN) for (let i = 0; i < count; i++) ctx.drop(DROP["send-failed"]);
      else {
        // EINVAL, EMSGSIZE: datagrams too big for the path (an MTU set too high): this batch
        // one by one, fragmented or refused each. Anything else (EIO: no checksum offload on
        // the way out): no GSO from now on.
        if (e === EINVAL || e === EMSGSIZE) ctx.log(`sleeve tx: datagrams of ${lens[0]} bytes do not fit the path MTU`);
        else {
          gso = false;
          ctx.log(`sleeve tx: UDP GSO refused (${strerror(e)}); sending datagrams one by one`);
        }
        for (let i = 0; i < count; i++) if (ctx.sendTo(bufPtr + offs[i]!, lens[i]!, to!.saPtr)) sent(i, 1);
      }
    }
    count = 0;
    bytes = 0;
    closed = false;
    to = null;
    pos = 0;
  };

  const queue = (t: Target, frameOff: number, frameLen: number): void => {
    const nb = t.nb;
    if (nb === null) {
      ctx.drop(DROP["no-route"]);
      return;
    }
    const len = ctx.prepare(buf, bufPtr, frameOff, frameLen, t.dst, INITIAL_HOPS, nb);
    if (len < 0) return;
    const at = ctx.prepared;
    const fits =
      count > 0 && nb === to && !closed && len <= lens[0]! && count < MAX_SEGS && bytes + len <= MAX_GSO_BYTES;
    if (count > 0 && !fits) flush();
    if (count === 0) to = nb;
    else if (len < lens[0]!) closed = true;
    offs[count] = at;
    lens[count] = len;
    frameLens[count] = frameLen;
    count++;
    bytes += len;
    pos = (at + len + 7) & ~7;
  };

  const flood = (frameOff: number, len: number): void => {
    const targets = ctx.table.flood;
    let clobbered = false;
    // memcpy, not subarray/set: nothing in the loops allocates (sleeve-aead.ts says why).
    if (targets.length > 1) sys.memcpy(sparePtr, bufPtr + frameOff, len);
    for (const t of targets) {
      if (clobbered) sys.memcpy(bufPtr + frameOff, sparePtr, len);
      if (t.nb === null) {
        ctx.drop(DROP["no-route"]);
        continue;
      }
      if (ctx.sendData(buf, bufPtr, frameOff, len, t.dst, INITIAL_HOPS, t.nb)) {
        ctx.count(ST_TX_FRAMES, 1);
        ctx.count(ST_TX_BYTES, len);
      }
      clobbered = t.nb.send !== null;
    }
  };

  while (!ctx.stopping()) {
    ctx.refresh();
    if (pos + HEADROOM + MAX_FRAME + TAG_LEN > POOL) flush();
    const frameOff = pos + HEADROOM;
    // Every frame comes after a virtio_net_hdr (the TAP has IFF_VNET_HDR for sleeve-gro.ts).
    const r = sys.read(tap, bufPtr + frameOff - VNET_HDR_LEN, MAX_FRAME + VNET_HDR_LEN);
    const n = r - VNET_HDR_LEN;
    if (r < 0) {
      const e = errno();
      flush();
      if (e !== EAGAIN && e !== EINTR) {
        ctx.drop(DROP["tap-read-failed"]);
        ctx.log(`sleeve tx: read from the TAP: ${strerror(e)}`);
      }
      pollIn[0] = tap;
      pollIn[1] = POLLIN;
      sys.poll(pollInPtr, 1, 100);
      continue;
    }
    if (n < ETH_HEADER_LEN) continue;
    if (buf[frameOff - VNET_HDR_LEN + 1] !== 0) {
      // A GSO frame: not offered (no TUNSETOFFLOAD), so never expected.
      ctx.drop(DROP["tap-read-failed"]);
      continue;
    }
    if (buf[frameOff]! & 1) {
      flush();
      flood(frameOff, n);
      continue;
    }
    const target = ctx.table.macs.get(macAt(buf, frameOff));
    if (target !== undefined) queue(target, frameOff, n);
    else if (ctx.table.flood.length === 0) ctx.drop(DROP["no-mac"]);
    else {
      // Unknown unicast (e.g. a new pod's reply before its address reached us by gossip):
      // to every sleeve peer, as the bridge floods it and VXLAN's flood entry carries it.
      flush();
      flood(frameOff, n);
    }
  }
  flush();
}
