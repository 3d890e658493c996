/**
 * The sleeve: pod traffic to peers VXLAN cannot reach, carried in UDP 6783 between the
 * agents through a TAP on the node's bridge (wire format: net/sleeve/frame.ts).
 *
 * Design: the per-packet path never touches this (the agent's) event loop. Two workers
 * run tight loops of syscalls through bun:ffi on non-blocking fds: TX reads the TAP and
 * sends, RX receives and writes the TAP or relays (sleeve-tx.ts, sleeve-rx.ts). When an
 * fd has nothing they poll(2) it for at most 100 ms, which is also how soon they notice a
 * stop. They never yield to their own event loop either, so nothing reaches them by
 * message: the table is JSON in a SharedArrayBuffer behind a seqlock, checked between
 * packets; stop is a shared word; stats are doubles in a SharedArrayBuffer, one block per
 * writer; send-key counters are shared under a lock (TX and a relay in RX may seal with
 * the same key, and a GCM nonce must never repeat). The loops allocate nothing per packet
 * (sleeve-aead.ts says why). Pongs and log lines come back by
 * postMessage, which a busy worker can still send.
 */
import { existsSync } from "node:fs";
import { ptr } from "bun:ffi";
import { encodeHeartbeat, ipv4ToU32, SLEEVE_PORT, u32ToIpv4 } from "../sleeve/frame.ts";
import {
  COUNTER_SLOTS,
  COUNTER_WORDS,
  CTRL_STOP,
  CTRL_TABLE_LEN,
  CTRL_TABLE_SEQ,
  CTRL_WORDS,
  DROP,
  DROP_REASONS,
  ST_DROPS,
  ST_RELAYED,
  ST_RX_BYTES,
  ST_RX_FRAMES,
  ST_TX_BYTES,
  ST_TX_FRAMES,
  STATS_BLOCK,
  STATS_WRITERS,
  TABLE_MAX_BYTES,
  WRITER_MAIN,
  type WorkerInit,
  type WorkerMessage,
} from "./sleeve-shared.ts";
import {
  AF_INET,
  errno,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
  SOL_UDP,
  sockaddrIn,
  strerror,
  sys,
  UDP_GRO,
  UDP_SEGMENT,
} from "./sleeve-sys.ts";
import { keysInUse, type SleeveTable, SleeveTableError, serializeTable } from "./sleeve-table.ts";
import { closeTap, openTap, type Tap } from "./tap.ts";

export type { SleeveTable };
export { SleeveTableError };

export type SleeveStats = {
  /** Data frames read from the TAP and sent (each flood copy counts), and their Ethernet bytes. */
  txFrames: number;
  txBytes: number;
  /** Data frames for us written to the TAP, and their Ethernet bytes. */
  rxFrames: number;
  rxBytes: number;
  /** Data frames passed on to another neighbour. */
  relayed: number;
  /** Frames dropped, by reason (every reason present, 0 when none). */
  drops: Record<string, number>;
};

/** How big the socket buffers are asked to be: a burst of ~3000 full frames. */
const SOCKET_BUFFER = 4 << 20;
const WORKER_START_MS = 10_000;
const WORKER_STOP_MS = 2_000;

/** The worker's entry: a sibling file from source, an entrypoint of its own in a compiled binary. */
function workerEntry(): string {
  if (!import.meta.url.includes("$bunfs")) return new URL("./sleeve-worker.ts", import.meta.url).href;
  const compiled = "/$bunfs/root/net/host/sleeve-worker.js";
  if (!existsSync(compiled))
    throw new Error(`${compiled} is not in this binary: add net/host/sleeve-worker.ts to bun build's entrypoints`);
  return compiled;
}

function openUdp(port: number): { fd: number; gso: boolean } {
  const fd = sys.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket(AF_INET, SOCK_DGRAM): ${strerror(errno())}`);
  const size = new Int32Array([SOCKET_BUFFER]);
  // The FORCE variants pass net.core.[rw]mem_max when we are root; the plain ones are capped by it.
  if (sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, ptr(size), 4) < 0)
    sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, ptr(size), 4);
  if (sys.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, ptr(size), 4) < 0)
    sys.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, ptr(size), 4);
  // Runs of datagrams from one sender come up as one buffer (sleeve-rx.ts splits them).
  sys.setsockopt(fd, SOL_UDP, UDP_GRO, ptr(new Int32Array([1])), 4);
  // Size 0 is "no segmentation", the default: this only asks whether the kernel has UDP GSO (4.18).
  const gso = sys.setsockopt(fd, SOL_UDP, UDP_SEGMENT, ptr(new Int32Array([0])), 4) === 0;
  const sa = sockaddrIn(0, port);
  if (sys.bind(fd, ptr(sa), 16) < 0) {
    const e = errno();
    sys.close(fd);
    throw new Error(`bind UDP 0.0.0.0:${port}: ${strerror(e)} (errno ${e})`);
  }
  return { fd, gso };
}

export class Sleeve {
  private readonly port: number;
  private readonly log: (msg: string) => void;
  private state: "new" | "starting" | "running" | "stopped" = "new";
  private tap: Tap | null = null;
  private udpFd = -1;
  private gso = false;
  private readonly workers: Worker[] = [];
  private readonly stopped: Promise<void>[] = [];
  private readonly ctrlBuf = new SharedArrayBuffer(CTRL_WORDS * 4);
  private readonly ctrl = new Int32Array(this.ctrlBuf);
  private readonly tableBuf = new SharedArrayBuffer(64 << 10, { maxByteLength: TABLE_MAX_BYTES });
  private readonly statsBuf = new SharedArrayBuffer(STATS_WRITERS * STATS_BLOCK * 8);
  private readonly statsArr = new Float64Array(this.statsBuf);
  private readonly countersBuf = new SharedArrayBuffer(COUNTER_SLOTS * COUNTER_WORDS * 4);
  private readonly slots = new Map<string, number>();
  /** Slots of dead send keys, for new ones. */
  private readonly freeSlots: number[] = [];
  private self = 0;
  private readonly pongs: ((from: string, nonce: bigint, sentAtMs: number) => void)[] = [];

  constructor(private readonly opts: { tap: string; port?: number; log(msg: string): void }) {
    this.port = opts.port ?? SLEEVE_PORT;
    this.log = (m) => opts.log(m);
  }

  /** Create the TAP (caller attaches it to the bridge and sets it up/MTU via netlink), bind UDP 0.0.0.0:port, start the workers. Throws an Error naming what failed. */
  async start(): Promise<void> {
    if (this.state !== "new") throw new Error(`sleeve ${this.opts.tap}: start() on a ${this.state} engine`);
    this.state = "starting";
    try {
      const entry = workerEntry();
      this.tap = openTap(this.opts.tap, { vnetHdr: true });
      const udp = openUdp(this.port);
      this.udpFd = udp.fd;
      this.gso = udp.gso;
      if (!udp.gso) this.log(`sleeve ${this.opts.tap}: no UDP GSO in this kernel; one sendto per datagram`);
      await Promise.all((["tx", "rx"] as const).map((role) => this.startWorker(entry, role)));
      if (this.state !== "starting") throw new Error("stopped while starting");
      this.state = "running";
    } catch (e) {
      await this.teardown();
      throw new Error(`sleeve ${this.opts.tap}: ${(e as Error).message}`, { cause: e });
    }
  }

  private startWorker(entry: string, role: "tx" | "rx"): Promise<void> {
    const w = new Worker(entry);
    this.workers.push(w);
    let ready: () => void = () => {};
    let fail: (e: Error) => void = () => {};
    let ended: () => void = () => {};
    this.stopped.push(new Promise<void>((r) => (ended = r)));
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      fail = reject;
    });
    const timer = setTimeout(
      () => fail(new Error(`${role} worker did not start in ${WORKER_START_MS} ms`)),
      WORKER_START_MS,
    );
    w.onmessage = (e: MessageEvent<WorkerMessage>) => {
      const m = e.data;
      if (m.kind === "ready") {
        clearTimeout(timer);
        ready();
      } else if (m.kind === "stopped") ended();
      else if (m.kind === "log") this.log(m.msg);
      else if (m.kind === "pong") for (const cb of this.pongs) cb(m.from, m.nonce, m.sentAtMs);
    };
    w.onerror = (e: ErrorEvent) => {
      clearTimeout(timer);
      fail(new Error(`${role} worker ${entry}: ${e.message}`));
      this.log(`sleeve ${role} worker error: ${e.message}`);
      ended();
    };
    const init: WorkerInit = {
      role,
      tapFd: this.tap!.fd,
      udpFd: this.udpFd,
      port: this.port,
      gso: this.gso,
      ctrl: this.ctrlBuf,
      table: this.tableBuf,
      stats: this.statsBuf,
      counters: this.countersBuf,
    };
    w.postMessage(init);
    return started;
  }

  /** Cheap to call often; workers pick the new table up without a restart. Throws SleeveTableError on a bad table. */
  setTable(t: SleeveTable): void {
    const json = serializeTable(t, (k) => this.slotOf(k));
    const bytes = new TextEncoder().encode(json);
    if (bytes.length > TABLE_MAX_BYTES)
      throw new SleeveTableError("table", `table of ${bytes.length} bytes is too big`);
    if (bytes.length > this.tableBuf.byteLength) this.tableBuf.grow(Math.min(TABLE_MAX_BYTES, bytes.length * 2));
    Atomics.add(this.ctrl, CTRL_TABLE_SEQ, 1);
    new Uint8Array(this.tableBuf).set(bytes);
    Atomics.store(this.ctrl, CTRL_TABLE_LEN, bytes.length);
    Atomics.add(this.ctrl, CTRL_TABLE_SEQ, 1);
    this.self = ipv4ToU32(t.self);
    this.releaseDeadSlots(keysInUse(t));
  }

  /**
   * Each send key gets a counter slot for as long as it lives (is in the table or the live
   * keys): a key that leaves the table and comes back goes on from where it was. A dead
   * key's slot goes to a new key, its counter raised to the highest of all slots: no key
   * draws a number twice, even one wrongly taken for dead that comes back.
   */
  private slotOf(sendKey: string): number {
    const had = this.slots.get(sendKey);
    if (had !== undefined) return had;
    const reused = this.freeSlots.pop();
    const slot = reused ?? this.slots.size;
    if (slot >= COUNTER_SLOTS)
      throw new SleeveTableError("neighbours.sendKey", `more than ${COUNTER_SLOTS} live send keys`);
    if (reused !== undefined) this.raiseCounter(slot);
    this.slots.set(sendKey, slot);
    return slot;
  }

  /**
   * A reused slot's counter up to the highest counter of any slot, under the slot's spin
   * lock (the one sleeve-loop.ts takes a number under); counters only ever go up.
   */
  private raiseCounter(slot: number): void {
    const c = new Int32Array(this.countersBuf);
    const valueAt = (s: number) => c[s * COUNTER_WORDS + 1]! * 0x100000000 + (c[s * COUNTER_WORDS]! >>> 0);
    const lock = slot * COUNTER_WORDS + 2;
    while (Atomics.compareExchange(c, lock, 0, 1) !== 0) {}
    const slotsEver = this.slots.size + this.freeSlots.length + 1;
    let top = 0;
    for (let s = 0; s < slotsEver; s++) top = Math.max(top, valueAt(s));
    Atomics.store(c, lock - 2, (top % 0x100000000) | 0);
    Atomics.store(c, lock - 1, Math.floor(top / 0x100000000));
    Atomics.store(c, lock, 0);
  }

  /** Slots of send keys no longer in use go to the free list. */
  private releaseDeadSlots(inUse: Set<string>): void {
    for (const [key, slot] of this.slots) {
      if (inUse.has(key)) continue;
      this.slots.delete(key);
      this.freeSlots.push(slot);
    }
  }

  /** Send a heartbeat ping (over whatever the kernel routes: the agent sends it to a peer's bridge IP so it travels through VXLAN). */
  ping(to: string, nonce: bigint): void {
    if (this.state !== "running") return;
    const msg = encodeHeartbeat({ type: "ping", sender: u32ToIpv4(this.self), nonce, sentAtMs: Date.now() });
    const sa = sockaddrIn(ipv4ToU32(to), this.port);
    if (sys.sendto(this.udpFd, ptr(msg), msg.length, 0, ptr(sa), 16) < 0)
      this.statsArr[WRITER_MAIN * STATS_BLOCK + ST_DROPS + DROP["send-failed"]]! += 1;
  }

  /** `from` is the pong's source IP; only pongs from pingFrom addresses are reported. */
  onPong(cb: (from: string, nonce: bigint, sentAtMs: number) => void): void {
    this.pongs.push(cb);
  }

  stats(): SleeveStats {
    const sum = (slot: number) => {
      let n = 0;
      for (let w = 0; w < STATS_WRITERS; w++) n += this.statsArr[w * STATS_BLOCK + slot]!;
      return n;
    };
    const drops: Record<string, number> = {};
    DROP_REASONS.forEach((r, i) => {
      drops[r] = sum(ST_DROPS + i);
    });
    return {
      txFrames: sum(ST_TX_FRAMES),
      txBytes: sum(ST_TX_BYTES),
      rxFrames: sum(ST_RX_FRAMES),
      rxBytes: sum(ST_RX_BYTES),
      relayed: sum(ST_RELAYED),
      drops,
    };
  }

  /** Workers end, fds closed (the TAP disappears), nothing left behind. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    await this.teardown();
  }

  private async teardown(): Promise<void> {
    this.state = "stopped";
    Atomics.store(this.ctrl, CTRL_STOP, 1);
    // A worker leaves its loop within one poll timeout; close the fds only after, never under it.
    const late = Symbol();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<typeof late>((r) => (timer = setTimeout(() => r(late), WORKER_STOP_MS)));
    const ended = await Promise.race([Promise.all(this.stopped), timeout]);
    clearTimeout(timer);
    if (ended === late)
      this.log(`sleeve ${this.opts.tap}: a worker did not stop in ${WORKER_STOP_MS} ms; terminating it`);
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
    if (this.udpFd >= 0) sys.close(this.udpFd);
    this.udpFd = -1;
    if (this.tap) closeTap(this.tap);
    this.tap = null;
  }
}
