/**
 * What both packet loops (sleeve-tx.ts, sleeve-rx.ts) need inside a worker: the shared
 * control words and the current table (picked up between packets, never by yielding to
 * the event loop), their block of the stats, send-key counters, and sending one data
 * frame to a neighbour, plain or sealed, with the header written in the headroom before
 * the frame.
 */
import { ptr } from "bun:ffi";
import { FLAG_SEALED, HEADER_LEN, MAX_COUNTER, TYPE_DATA, writeHeader } from "../sleeve/frame.ts";
import type { ReplayWindow } from "../sleeve/replay.ts";
import type { Aead } from "./sleeve-aead.ts";
import {
  CTRL_STOP,
  CTRL_TABLE_LEN,
  CTRL_TABLE_SEQ,
  COUNTER_WORDS,
  DROP,
  ST_DROPS,
  STATS_BLOCK,
  type WorkerInit,
  type WorkerMessage,
} from "./sleeve-shared.ts";
import { EAGAIN, EINTR, errno, POLLOUT, stable, strerror, sys } from "./sleeve-sys.ts";
import { type CompiledTable, compileTable, EMPTY_TABLE, type Neighbour } from "./sleeve-table.ts";

/** Room before a frame in a loop's buffer: a sealed header and counter. */
export const HEADROOM = HEADER_LEN + 8;
export const MAX_FRAME = 65535;

/**
 * How often at most a loop collects the garbage its table changes left. A worker never
 * goes back to its event loop, where Bun collects when idle: without this, each table's
 * Maps and buffers stayed until the heap grew enough for an allocation-driven collection
 * (a test worker compiling 20 kB tables: 0.5 -> 3.4 MB of heap over 2000 tables, 0.3 MB
 * with one collection a second), so every peer restart left memory behind (issue 14).
 */
const GC_EVERY_MS = 10_000;

export class LoopContext {
  readonly ctrl: Int32Array;
  readonly stats: Float64Array;
  readonly base: number;
  readonly counters: Int32Array;
  table: CompiledTable = EMPTY_TABLE;
  private seen = -1;
  private readonly windows = new Map<string, ReplayWindow>();
  private readonly aeads = new Map<string, Aead>();
  private readonly pollOut = stable(Int32Array, 8);
  private readonly pollOutPtr = ptr(this.pollOut);
  private lastLog = 0;
  private garbage = false;
  private lastGc = 0;

  constructor(
    readonly init: WorkerInit,
    writer: number,
    readonly post: (m: WorkerMessage) => void,
  ) {
    this.ctrl = new Int32Array(init.ctrl);
    this.stats = new Float64Array(init.stats);
    this.base = writer * STATS_BLOCK;
    this.counters = new Int32Array(init.counters);
  }

  stopping(): boolean {
    return Atomics.load(this.ctrl, CTRL_STOP) !== 0;
  }

  /** Take a newer table if the main thread published one (and is not mid-write). */
  refresh(): void {
    if (this.garbage) this.collect();
    const seq = Atomics.load(this.ctrl, CTRL_TABLE_SEQ);
    if (seq === this.seen || seq & 1) return;
    const len = Atomics.load(this.ctrl, CTRL_TABLE_LEN);
    if (len === 0) {
      this.seen = seq;
      return;
    }
    const bytes = new Uint8Array(this.init.table, 0, len).slice();
    if (Atomics.load(this.ctrl, CTRL_TABLE_SEQ) !== seq) return;
    this.seen = seq;
    try {
      this.table = compileTable(new TextDecoder().decode(bytes), this.init.port, this.windows, this.aeads);
    } catch (e) {
      this.log(`sleeve ${this.init.role}: table refused: ${(e as Error).message}`);
    }
    this.garbage = true;
  }

  /** The garbage of table changes, at most every GC_EVERY_MS (a full collection of a worker's small heap: ~3 ms). */
  private collect(): void {
    const now = Date.now();
    if (now - this.lastGc < GC_EVERY_MS) return;
    this.lastGc = now;
    this.garbage = false;
    Bun.gc(true);
  }

  drop(reason: number): void {
    this.stats[this.base + ST_DROPS + reason]! += 1;
  }

  count(slot: number, n: number): void {
    this.stats[this.base + slot]! += n;
  }

  /** A log line to the main thread, at most one per second (a flood of errors must not become a flood of messages). */
  log(msg: string): void {
    const now = Date.now();
    if (now - this.lastLog < 1000) return;
    this.lastLog = now;
    this.post({ kind: "log", msg });
  }

  /** Where `prepare` put the datagram's first byte. */
  prepared = 0;

  /**
   * Make the frame at buf[frameOff, +frameLen) a datagram to peer `dst` through `nb`, in
   * place: sealed with the neighbour's send key when it has one (header and counter in the
   * HEADROOM before the frame, the tag after it), plain otherwise (header in the 8 bytes
   * before), unless the table says sealed. Returns the datagram's length, starting at
   * `this.prepared`, or -1 when the frame is dropped (counted).
   */
  prepare(
    buf: Uint8Array,
    bufPtr: number,
    frameOff: number,
    frameLen: number,
    dst: number,
    hops: number,
    nb: Neighbour,
  ): number {
    if (nb.send !== null) {
      const counter = this.nextCounter(nb.sendSlot);
      if (counter >= MAX_COUNTER) {
        this.drop(DROP["no-key"]);
        return -1;
      }
      const hdr = frameOff - HEADROOM;
      writeHeader(buf, hdr, TYPE_DATA, hops, FLAG_SEALED, dst);
      this.prepared = hdr;
      return nb.send.seal(buf, bufPtr, hdr, frameLen, counter);
    }
    if (this.table.sealed) {
      this.drop(DROP["no-key"]);
      return -1;
    }
    const hdr = frameOff - HEADER_LEN;
    writeHeader(buf, hdr, TYPE_DATA, hops, 0, dst);
    this.prepared = hdr;
    return frameLen + HEADER_LEN;
  }

  /** The next counter of a send key's slot: taken under the slot's spin lock, as TX and RX share it. */
  private nextCounter(slot: number): number {
    const c = this.counters;
    const at = slot * COUNTER_WORDS;
    while (Atomics.compareExchange(c, at + 2, 0, 1) !== 0) {}
    const lo = c[at]! >>> 0;
    const hi = c[at + 1]!;
    if (lo === 0xffffffff) {
      c[at] = 0;
      c[at + 1] = hi + 1;
    } else c[at] = lo + 1;
    Atomics.store(c, at + 2, 0);
    return hi * 0x100000000 + lo;
  }

  /** prepare, then sendto. Returns success. */
  sendData(
    buf: Uint8Array,
    bufPtr: number,
    frameOff: number,
    frameLen: number,
    dst: number,
    hops: number,
    nb: Neighbour,
  ) {
    const len = this.prepare(buf, bufPtr, frameOff, frameLen, dst, hops, nb);
    return len > 0 && this.sendTo(bufPtr + this.prepared, len, nb.saPtr);
  }

  /** sendmsg of a prepared msghdr, waiting (bounded) while the socket's buffer is full: 0, or the errno it failed with. */
  sendMsg(msgPtr: number): number {
    for (let tries = 0; tries < 20; tries++) {
      if (sys.sendmsg(this.init.udpFd, msgPtr, 0) >= 0) return 0;
      const e = errno();
      if (e === EAGAIN) this.waitWritable();
      else if (e !== EINTR) return e;
    }
    return EAGAIN;
  }

  private waitWritable(): void {
    this.pollOut[0] = this.init.udpFd;
    this.pollOut[1] = POLLOUT;
    sys.poll(this.pollOutPtr, 1, 10);
  }

  /** sendto, waiting (bounded) while the socket's buffer is full rather than dropping at once. */
  sendTo(p: number, len: number, saPtr: number): boolean {
    for (let tries = 0; tries < 20; tries++) {
      if (sys.sendto(this.init.udpFd, p, len, 0, saPtr, 16) >= 0) return true;
      const e = errno();
      if (e === EAGAIN) this.waitWritable();
      else if (e !== EINTR) {
        this.drop(DROP["send-failed"]);
        this.log(`sleeve ${this.init.role}: sendto: ${strerror(e)}`);
        return false;
      }
    }
    this.drop(DROP["send-failed"]);
    return false;
  }
}
