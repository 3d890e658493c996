/**
 * Kubernetes Events the way the API expects them (pure; the clock is given): one Event
 * object per series, a series being (reason, key), whose `count`, `lastTimestamp` and
 * `message` are updated by PATCH as the same thing happens again, never one object per
 * retry. Like client-go's EventCorrelator, writes are rate-limited: a series is written
 * at most once per `minIntervalMs` (occurrences in between are summed into the next
 * PATCH), and a token bucket (`burst`, one token per `refillMs`) bounds the writes of all
 * series together, so a storm of failures costs the API server a bounded trickle.
 * A series quiet for `windowMs` is over: its next occurrence starts a new Event. At most
 * `maxSeries` are remembered (the least recently seen is forgotten first).
 *
 * The caller records occurrences, asks `due()` for the writes to make now, performs them
 * (net/k8s/event-recorder.ts) and reports each one's outcome back.
 */

export type Occurrence = { reason: string; key: string; message: string; type?: "Warning" | "Normal" };

export type EventWrite =
  | {
      op: "create";
      series: string;
      reason: string;
      type: "Warning" | "Normal";
      message: string;
      count: number;
      firstTimestamp: number;
      lastTimestamp: number;
    }
  | { op: "patch"; series: string; name: string; message: string; count: number; lastTimestamp: number };

export type AggregatorOptions = {
  now(): number;
  minIntervalMs?: number;
  burst?: number;
  refillMs?: number;
  windowMs?: number;
  maxSeries?: number;
};

type Series = {
  id: string;
  reason: string;
  type: "Warning" | "Normal";
  message: string;
  count: number;
  first: number;
  last: number;
  /** The count the API has (as far as we know), and when we last wrote. */
  written: number;
  writtenAt?: number;
  /** The Event object's name, once created. */
  name?: string;
  inFlight: boolean;
};

export class EventAggregator {
  private series = new Map<string, Series>();
  private tokens: number;
  private tokensAt: number;
  private readonly o: Required<AggregatorOptions>;

  constructor(o: AggregatorOptions) {
    this.o = { minIntervalMs: 10_000, burst: 25, refillMs: 10_000, windowMs: 600_000, maxSeries: 256, ...o };
    this.tokens = this.o.burst;
    this.tokensAt = o.now();
  }

  static seriesId(reason: string, key: string): string {
    return `${reason}\u0000${key}`;
  }

  record(occ: Occurrence): void {
    const now = this.o.now();
    const id = EventAggregator.seriesId(occ.reason, occ.key);
    let s = this.series.get(id);
    if (s && !s.inFlight && now - s.last > this.o.windowMs) s = undefined;
    if (!s) {
      s = {
        id,
        reason: occ.reason,
        type: occ.type ?? "Warning",
        message: occ.message,
        count: 0,
        first: now,
        last: now,
        written: 0,
        inFlight: false,
      };
    }
    s.count++;
    s.last = now;
    s.message = occ.message;
    // re-inserted: the map's order is least recently seen first
    this.series.delete(id);
    this.series.set(id, s);
    while (this.series.size > this.o.maxSeries) {
      const oldest = [...this.series.values()].find((x) => !x.inFlight);
      if (!oldest) break;
      this.series.delete(oldest.id);
    }
  }

  /** The writes to make now; each is in flight until `done` or `failed` is called for it. */
  due(): EventWrite[] {
    const now = this.o.now();
    this.refill(now);
    const out: EventWrite[] = [];
    for (const s of this.series.values()) {
      if (s.inFlight || s.count === s.written) continue;
      if (s.writtenAt !== undefined && now - s.writtenAt < this.o.minIntervalMs) continue;
      if (this.tokens < 1) break;
      this.tokens--;
      s.inFlight = true;
      out.push(
        s.name === undefined
          ? {
              op: "create",
              series: s.id,
              reason: s.reason,
              type: s.type,
              message: s.message,
              count: s.count,
              firstTimestamp: s.first,
              lastTimestamp: s.last,
            }
          : { op: "patch", series: s.id, name: s.name, message: s.message, count: s.count, lastTimestamp: s.last },
      );
    }
    return out;
  }

  /** A write went through; `name` is the Event object's (what a create made). */
  done(w: EventWrite, name: string): void {
    const s = this.series.get(w.series);
    if (!s) return;
    s.inFlight = false;
    s.name = name;
    s.written = w.count;
    s.writtenAt = this.o.now();
  }

  /**
   * A write failed. `gone`: the Event no longer exists (a PATCH answered 404, e.g. the
   * API's TTL removed it), so the next write creates it again, with the whole count.
   * Otherwise it is tried again after the interval.
   */
  failed(w: EventWrite, gone = false): void {
    const s = this.series.get(w.series);
    if (!s) return;
    s.inFlight = false;
    s.writtenAt = this.o.now();
    if (gone) {
      s.name = undefined;
      s.written = 0;
      s.writtenAt = undefined;
    }
  }

  /** How many series are remembered (tests, and a bound to check). */
  get size(): number {
    return this.series.size;
  }

  private refill(now: number): void {
    const earned = Math.floor((now - this.tokensAt) / this.o.refillMs);
    if (earned <= 0) return;
    this.tokens = Math.min(this.o.burst, this.tokens + earned);
    this.tokensAt = this.tokens === this.o.burst ? now : this.tokensAt + earned * this.o.refillMs;
  }
}
