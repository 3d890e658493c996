/**
 * The address allocator of one peer, over the spans of the cluster range it owns.
 *
 * Allocations are keyed by attachment (container id + interface name), so a repeated
 * ADD gets its address back and `created` tells the caller whether it may release it
 * on rollback. Free addresses are found next-fit from the last one handed out, so a
 * just-released address is not reused at once (stale ARP entries elsewhere age out).
 * The ring (ring.ts) decides which spans this peer owns and tells it with `setOwned`;
 * the allocator never hands out an address outside them.
 */
import { contains, formatCidr, size, type Cidr } from "../cidr.ts";

export type Entry = { containerId: string; ifname: string; address: number; pod?: string; createdAt: number };
/** [start, end) in absolute addresses. */
export type Span = [number, number];

/** Where entries persist; the agent gives an SQLite one, tests an in-memory one. */
export interface AllocStore {
  load(): Entry[];
  put(e: Entry): void;
  remove(e: Entry): void;
}

export class RangeFullError extends Error {
  constructor(readonly range: string) {
    super(`no free address left in the space this peer owns of ${range}`);
    this.name = "RangeFullError";
  }
}

const key = (cid: string, ifname: string) => `${cid}\u0000${ifname}`;

export class Allocator {
  private byKey = new Map<string, Entry>();
  /** Attachments by container id, for release and lookup by container. */
  private byContainer = new Map<string, Set<Entry>>();
  /** 1 = allocated (or network/broadcast address), by offset in the range. */
  private used: Uint8Array;
  /** 1 = owned by this peer, by offset. */
  private mine: Uint8Array;
  private owned: Span[] = [];
  private ownedCount = 0;
  private cursor = 0;
  private listeners: (() => void)[] = [];

  constructor(
    readonly range: Cidr,
    private store: AllocStore,
    owned: Span[] = [[range.base, range.base + size(range)]],
    private now: () => number = Date.now,
  ) {
    this.used = new Uint8Array(size(range));
    this.mine = new Uint8Array(size(range));
    this.used[0] = 1; // network address
    this.used[this.used.length - 1] = 1; // broadcast address
    for (const e of store.load()) {
      if (!contains(range, e.address)) continue;
      this.index(e);
      this.used[e.address - range.base] = 1;
    }
    this.setOwned(owned);
  }

  /** The spans this peer owns; allocations outside them stay held but no new ones go there. */
  setOwned(spans: Span[]): void {
    this.mine.fill(0);
    this.owned = spans
      .map(([s, e]) => [Math.max(s, this.range.base), Math.min(e, this.range.base + this.used.length)] as Span)
      .filter(([s, e]) => e > s);
    this.ownedCount = 0;
    for (const [s, e] of this.owned) {
      for (let i = s - this.range.base; i < e - this.range.base; i++) {
        if (this.mine[i]) continue;
        this.mine[i] = 1;
        if (!this.used[i]) this.ownedCount++;
      }
    }
  }

  ownedSpans(): Span[] {
    return this.owned.map((s) => [...s] as Span);
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Usable addresses in the whole range (without network and broadcast). */
  get capacity(): number {
    return Math.max(0, this.used.length - 2);
  }

  /** Free addresses in the spans this peer owns. */
  get free(): number {
    return this.ownedCount;
  }

  get active(): number {
    return this.byKey.size;
  }

  allocate(containerId: string, ifname: string, pod?: string): { entry: Entry; created: boolean } {
    const have = this.byKey.get(key(containerId, ifname));
    if (have) return { entry: have, created: false };
    const n = this.used.length;
    if (this.ownedCount > 0) {
      for (let i = 0; i < n; i++) {
        const off = (this.cursor + i) % n;
        if (this.used[off] || !this.mine[off]) continue;
        const entry: Entry = {
          containerId,
          ifname,
          address: this.range.base + off,
          createdAt: this.now(),
          ...(pod ? { pod } : {}),
        };
        this.store.put(entry);
        this.used[off] = 1;
        this.ownedCount--;
        this.index(entry);
        this.cursor = (off + 1) % n;
        this.changed();
        return { entry, created: true };
      }
    }
    throw new RangeFullError(formatCidr(this.range));
  }

  /** Release one attachment, or every attachment of the container when `ifname` is omitted. */
  release(containerId: string, ifname?: string): Entry[] {
    const one = ifname === undefined ? undefined : this.byKey.get(key(containerId, ifname));
    const gone = ifname === undefined ? this.lookup(containerId) : one ? [one] : [];
    for (const e of gone) {
      this.store.remove(e);
      this.byKey.delete(key(e.containerId, e.ifname));
      const set = this.byContainer.get(e.containerId)!;
      set.delete(e);
      if (!set.size) this.byContainer.delete(e.containerId);
      const off = e.address - this.range.base;
      this.used[off] = 0;
      if (this.mine[off]) this.ownedCount++;
    }
    if (gone.length) this.changed();
    return gone;
  }

  /**
   * A span to give away: the upper half of the longest run of free addresses within
   * `within` (default: what we own), at least 1 address; undefined when nothing is free.
   */
  spanToGive(within: Span[] = this.owned): Span | undefined {
    let best: Span | undefined;
    for (const [s, e] of within) {
      let runStart = -1;
      for (let a = s; a <= e; a++) {
        const free = a < e && !this.used[a - this.range.base];
        if (free && runStart < 0) runStart = a;
        if (!free && runStart >= 0) {
          if (!best || a - runStart > best[1] - best[0]) best = [runStart, a];
          runStart = -1;
        }
      }
    }
    if (!best) return undefined;
    const len = best[1] - best[0];
    return len === 1 ? best : [best[1] - Math.floor(len / 2), best[1]];
  }

  lookup(containerId: string): Entry[] {
    return [...(this.byContainer.get(containerId) ?? [])];
  }

  private index(e: Entry): void {
    this.byKey.set(key(e.containerId, e.ifname), e);
    const set = this.byContainer.get(e.containerId) ?? new Set<Entry>();
    this.byContainer.set(e.containerId, set);
    set.add(e);
  }

  list(): Entry[] {
    return [...this.byKey.values()];
  }
}
