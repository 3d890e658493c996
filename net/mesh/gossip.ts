/**
 * The gossip exchange over established connections, apart from the connections
 * themselves (router.ts): what to do with Gossip, Digest, Announce and Request frames,
 * and when to announce news.
 *
 * Push-pull: our own entry is pushed whole by the router when it changes. Anything else
 * a merge finds new is announced as a 14-byte key to every neighbour not known to have
 * it; a neighbour that lacks it asks (Request) and gets the whole line. On connect and
 * every 30 s with a few neighbours, both sides send a digest of everything they know and
 * fill each other's gaps. Merges only report news, so a change spreads once and stops.
 */
import {
  checkStride,
  encodeFrame,
  encodeKeys,
  encodeNames,
  FrameType,
  KEY_BYTES,
  ProtocolError,
  readNum,
  type Frame,
} from "./frame.ts";
import type { News, PeerEntry, Topology } from "./topology.ts";
import type { Scheduler } from "./transport.ts";

export type GossipDeps<C> = {
  topology: Topology;
  selfNum: number;
  sched: Scheduler;
  /** Batching delay for announcing news in a burst. */
  delayMs: number;
  send(c: C, frame: Uint8Array): void;
  established(): Iterable<C>;
  /** Our entry once published (until then it stays out of digests). */
  published(): boolean;
  /** New entries were merged. */
  changed(): void;
  /** Someone remembers an entry of ours newer than what we have: outbid it. */
  aboutSelf(e: PeerEntry): void;
  after(ms: number, fn: () => void): void;
};

export class Gossip<C> {
  /** News waiting to be announced, by name, with the neighbours known to have it. */
  private queued = new Map<number, { line: string; version: number; holders: C[] }>();
  /** Entries we asked a neighbour for and have not received yet. */
  private requested = new Map<number, { version: number; at: number }>();
  private flushPending = false;
  private lastFlush = -Infinity;

  constructor(private d: GossipDeps<C>) {}

  /** Handle a gossip-family frame from an established connection. */
  handle(c: C, f: Frame): void {
    switch (f.type) {
      case FrameType.Gossip:
        this.onLines(c, f.text());
        return;
      case FrameType.Digest:
      case FrameType.Announce:
        this.onKeys(c, f.payload, f.type === FrameType.Digest);
        return;
      case FrameType.Request:
        this.onRequest(c, f.payload);
        return;
      default:
        throw new ProtocolError(`unknown frame type 0x${f.type.toString(16)}`);
    }
  }

  /** Everything we know, as a Digest frame: sent on connect and periodically. */
  digestFrame(): Uint8Array {
    return encodeFrame(FrameType.Digest, encodeKeys(this.digest()));
  }

  private digest(): { num: number; version: number }[] {
    const all = this.d.topology.digest();
    return this.d.published() ? all : all.filter((k) => k.num !== this.d.selfNum);
  }

  private onLines(c: C, text: string): void {
    const { news, dupes, aboutSelf } = this.d.topology.merge(text.split("\n").filter(Boolean));
    for (const n of news) this.queue(n, c);
    for (const num of dupes) this.queued.get(num)?.holders.push(c);
    if (aboutSelf) this.d.aboutSelf(aboutSelf);
    if (news.length) this.d.changed();
  }

  private onKeys(c: C, payload: Uint8Array, digest: boolean): void {
    const dv = checkStride(payload, KEY_BYTES, "digest");
    const want: number[] = [];
    const theirs = digest ? new Map<number, number>() : undefined;
    const now = this.d.sched.now();
    for (let off = 0; off < payload.length; off += KEY_BYTES) {
      const num = readNum(dv, off);
      const version = dv.getFloat64(off + 6);
      theirs?.set(num, version);
      const mine = this.d.topology.versionOf(num);
      if (mine !== undefined && mine >= version) {
        if (mine === version) {
          const q = this.queued.get(num);
          if (q?.version === version) q.holders.push(c);
        }
        continue;
      }
      if (num === this.d.selfNum) continue;
      const asked = this.requested.get(num);
      if (asked && asked.version >= version && now - asked.at < 2000) continue;
      this.requested.set(num, { version, at: now });
      want.push(num);
    }
    if (want.length) this.d.send(c, encodeFrame(FrameType.Request, encodeNames(want)));
    if (theirs) {
      // Fill their gaps too: what they lack or have older.
      const lines: string[] = [];
      for (const k of this.digest()) {
        const v = theirs.get(k.num);
        if (v === undefined || v < k.version) lines.push(this.d.topology.lineOf(k.num)!);
      }
      if (lines.length) this.d.send(c, encodeFrame(FrameType.Gossip, lines.join("\n")));
    }
  }

  private onRequest(c: C, payload: Uint8Array): void {
    const dv = checkStride(payload, 6, "request");
    const lines: string[] = [];
    for (let off = 0; off < payload.length; off += 6) {
      const line = this.d.topology.lineOf(readNum(dv, off));
      if (line) lines.push(line);
    }
    if (lines.length) this.d.send(c, encodeFrame(FrameType.Gossip, lines.join("\n")));
  }

  private queue({ line, num, version }: News, from: C): void {
    this.requested.delete(num);
    this.queued.set(num, { line, version, holders: [from] });
    if (this.flushPending) return;
    this.flushPending = true;
    // News after a quiet spell goes out at once (a join crosses the mesh without waiting
    // at every hop); in a burst, a delay folds many lines into one frame and lets
    // neighbours that already have a line say so before we announce it to them.
    const quiet = this.d.sched.now() - this.lastFlush > 4 * this.d.delayMs;
    this.d.after(quiet ? 0 : this.d.delayMs, () => this.flush());
  }

  private flush(): void {
    this.flushPending = false;
    this.lastFlush = this.d.sched.now();
    const items = [...this.queued];
    this.queued.clear();
    let everyone: Uint8Array | undefined;
    const enc = (xs: typeof items) =>
      encodeFrame(FrameType.Announce, encodeKeys(xs.map(([num, q]) => ({ num, version: q.version }))));
    for (const c of this.d.established()) {
      const keys = items.filter(([, q]) => !q.holders.includes(c));
      if (!keys.length) continue;
      if (keys.length === items.length) {
        everyone ??= enc(items);
        this.d.send(c, everyone);
      } else this.d.send(c, enc(keys));
    }
  }
}
