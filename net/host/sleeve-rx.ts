/**
 * The sleeve's RX loop (a worker): receive from the UDP socket, accept data only from a
 * neighbour's underlay address and heartbeats only from pingFrom, check the frame, open
 * it when sealed (replay window first, tag, then mark), and either write the Ethernet
 * frame to the TAP (it is for us) or relay it with one hop less through the route's
 * neighbour, re-sealed with that hop's key. Pings are answered here; pongs go to the main
 * thread. Every refusal is a counted drop, never a throw.
 *
 * The socket has UDP_GRO on (sleeve.ts): one recvmsg may return a run of same-size
 * datagrams of one sender back to back, with their size in a cmsg; each is handled as if
 * it had come alone.
 */
import { ptr } from "bun:ffi";
import {
  Check,
  checkFrame,
  COUNTER_LEN,
  FLAG_SEALED,
  HEADER_LEN,
  HEARTBEAT_LEN,
  readCounter,
  readU32,
  TAG_LEN,
  TYPE_DATA,
  TYPE_PING,
  TYPE_PONG,
  u32ToIpv4,
  writeU32,
} from "../sleeve/frame.ts";
import { HEADROOM, type LoopContext, MAX_FRAME } from "./sleeve-loop.ts";
import { TapWriter } from "./sleeve-gro.ts";
import { DROP, ST_RELAYED } from "./sleeve-shared.ts";
import { EAGAIN, EINTR, errno, pinned, POLLIN, setU64, SOL_UDP, stable, strerror, sys, UDP_GRO } from "./sleeve-sys.ts";

/** Where a datagram lands: 8 bytes in, so a plain frame relayed sealed has room for the sealed header. */
const OFF = 8;
const NONE = -1;
/** What one recvmsg can return: a GRO run is at most one 64 KiB IP packet's worth. */
const MAX_READ = 65536;

export function runRx(ctx: LoopContext): void {
  const udp = ctx.init.udpFd;
  const writer = new TapWriter(ctx, ctx.init.tapFd);
  const buf = stable(Uint8Array, OFF + MAX_READ + 64);
  const bufPtr = ptr(buf);
  const view = new DataView(buf.buffer);
  // A frame relayed from the middle of a GRO run, when sealing it would overwrite the next datagram.
  const scratch = stable(Uint8Array, HEADROOM + MAX_FRAME + TAG_LEN);
  const scratchPtr = ptr(scratch);
  const sa = stable(Uint8Array, 16);
  const saPtr = ptr(sa);
  const iov = pinned(Uint32Array, 16);
  setU64(iov, 0, bufPtr + OFF);
  setU64(iov, 1, MAX_READ);
  const ctl = stable(Uint8Array, 64);
  const ctlView = new DataView(ctl.buffer);
  const msg = stable(Uint32Array, 56);
  setU64(msg, 0, saPtr);
  setU64(msg, 2, ptr(iov));
  setU64(msg, 3, 1);
  setU64(msg, 4, ptr(ctl));
  const msgPtr = ptr(msg);
  const pollIn = stable(Int32Array, 8);
  const pollInPtr = ptr(pollIn);

  const heartbeat = (at: number, type: number, src: number): number => {
    if (type === TYPE_PING) {
      buf[at + 1] = TYPE_PONG;
      writeU32(buf, at + 4, ctx.table.self);
      return sys.sendto(udp, bufPtr + at, HEARTBEAT_LEN, 0, saPtr, 16) < 0 ? DROP["send-failed"] : NONE;
    }
    const nonce = view.getBigUint64(at + 8);
    const sentAtMs = Number(view.getBigUint64(at + 16));
    ctx.post({ kind: "pong", from: u32ToIpv4(src), nonce, sentAtMs });
    return NONE;
  };

  /** Handle the datagram of n bytes at `at` (`last`: nothing of the run after it): a drop reason, or NONE. */
  const handle = (at: number, n: number, last: boolean): number => {
    const t = ctx.table;
    const src = readU32(sa, 4);
    const nb = t.neighbours.get(src);
    const pinger = t.pingFrom.has(src);
    if (nb === undefined && !pinger) return DROP["unknown-source"];
    if (checkFrame(buf, at, n) !== Check.ok) return DROP["bad-frame"];
    const type = buf[at + 1]!;
    if (type !== TYPE_DATA) {
      if (!pinger) return DROP["unknown-source"];
      return heartbeat(at, type, src);
    }
    if (nb === undefined) return DROP["unknown-source"];
    const hops = buf[at + 2]!;
    if (hops === 0) return DROP.ttl;
    let frameOff = at + HEADER_LEN;
    let len = n - HEADER_LEN;
    const sealed = (buf[at + 3]! & FLAG_SEALED) !== 0;
    if (sealed) {
      if (nb.recv === null || nb.window === null) return DROP["no-key"];
      const counter = readCounter(buf, at + HEADER_LEN);
      if (!nb.window.check(counter)) return DROP.replay;
      len = nb.recv.open(buf, bufPtr, at, n);
      if (len < 0) return DROP.auth;
      nb.window.accept(counter);
      frameOff = at + HEADER_LEN + COUNTER_LEN;
    } else if (t.sealed) {
      return DROP["plain-when-sealed"];
    }
    const dst = readU32(buf, at + 4);
    if (dst === t.self) {
      writer.push(buf, bufPtr, frameOff, len);
      return NONE;
    }
    if (hops <= 1) return DROP.ttl;
    const route = t.routes.get(dst);
    if (route === undefined || route.nb === null) return DROP["no-route"];
    let out = buf;
    let outPtr = bufPtr;
    if (!sealed && route.nb.send !== null && !last) {
      sys.memcpy(scratchPtr + HEADROOM, bufPtr + frameOff, len);
      out = scratch;
      outPtr = scratchPtr;
      frameOff = HEADROOM;
    }
    // sendData counts its own drops.
    if (ctx.sendData(out, outPtr, frameOff, len, dst, hops - 1, route.nb)) ctx.count(ST_RELAYED, 1);
    return NONE;
  };

  while (!ctx.stopping()) {
    ctx.refresh();
    msg[2] = 16; // msg_namelen
    setU64(msg, 5, ctl.length); // msg_controllen
    const n = sys.recvmsg(udp, msgPtr, 0);
    if (n < 0) {
      const e = errno();
      if (e !== EAGAIN && e !== EINTR) ctx.log(`sleeve rx: recvmsg: ${strerror(e)}`);
      pollIn[0] = udp;
      pollIn[1] = POLLIN;
      sys.poll(pollInPtr, 1, 100);
      continue;
    }
    let seg = n;
    if (msg[10]! >= 20 && ctlView.getInt32(8, true) === SOL_UDP && ctlView.getInt32(12, true) === UDP_GRO) {
      const size = ctlView.getInt32(16, true);
      if (size > 0 && size < n) seg = size;
    }
    for (let o = 0; o < n; o += seg) {
      const len = Math.min(seg, n - o);
      const dropped = handle(OFF + o, len, o + seg >= n);
      if (dropped !== NONE) ctx.drop(dropped);
    }
    writer.flush();
  }
}
