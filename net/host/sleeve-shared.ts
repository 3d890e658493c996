/**
 * What the sleeve's main thread and its workers share: the layout of the control words
 * and of the stats counters in SharedArrayBuffers, the drop reasons, and the messages.
 *
 * Control (Int32Array): STOP is set once by stop(); TABLE_SEQ is a seqlock around the
 * serialized table (odd while the main thread writes it, so a worker that saw an odd or a
 * changed value retries on a later packet); TABLE_LEN its length in bytes.
 *
 * Stats (Float64Array): one block per writer (tx worker, rx worker, main thread), so every
 * slot has one writer and no atomics are needed; the main thread sums the blocks. A double
 * counts exactly up to 2^53.
 */
export const CTRL_STOP = 0;
export const CTRL_TABLE_SEQ = 1;
export const CTRL_TABLE_LEN = 2;
export const CTRL_WORDS = 4;

export const DROP_REASONS = [
  "unknown-source",
  "bad-frame",
  "ttl",
  "no-route",
  "no-mac",
  "no-key",
  "auth",
  "replay",
  "plain-when-sealed",
  "send-failed",
  "tap-write-failed",
  "tap-read-failed",
] as const;
export type DropReason = (typeof DROP_REASONS)[number];
export const DROP = Object.fromEntries(DROP_REASONS.map((r, i) => [r, i])) as Record<DropReason, number>;

export const ST_TX_FRAMES = 0;
export const ST_TX_BYTES = 1;
export const ST_RX_FRAMES = 2;
export const ST_RX_BYTES = 3;
export const ST_RELAYED = 4;
export const ST_DROPS = 5;
export const STATS_BLOCK = ST_DROPS + DROP_REASONS.length;
export const WRITER_TX = 0;
export const WRITER_RX = 1;
export const WRITER_MAIN = 2;
export const STATS_WRITERS = 3;

/**
 * Send-key counters (Int32Array, COUNTER_WORDS per slot: low word, high word, a spin
 * lock): one slot per live send key (a dead key's slot is reused, sleeve.ts). Two words
 * under a lock, not a BigInt64Array, because Atomics on BigInts allocate a BigInt per packet.
 */
export const COUNTER_SLOTS = 4096;
export const COUNTER_WORDS = 4;
export const TABLE_MAX_BYTES = 64 << 20;

export type WorkerInit = {
  role: "tx" | "rx";
  tapFd: number;
  udpFd: number;
  port: number;
  /** The kernel takes UDP_SEGMENT (GSO) on this socket. */
  gso: boolean;
  ctrl: SharedArrayBuffer;
  table: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  counters: SharedArrayBuffer;
};

export type WorkerMessage =
  | { kind: "ready" }
  | { kind: "stopped" }
  | { kind: "log"; msg: string }
  | { kind: "pong"; from: string; nonce: bigint; sentAtMs: number };
