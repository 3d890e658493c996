/**
 * The address allocator of one peer over the ranges it owns (for now: the whole
 * cluster range; the distributed ring hands this class its share).
 *
 * Allocations are keyed by attachment (container id + interface name), so a repeated
 * ADD gets its address back and `created` tells the caller whether it may release it
 * on rollback. Free addresses are found next-fit from the last one handed out, so a
 * just-released address is not reused at once (stale ARP entries elsewhere age out).
 */
import { contains, numToIp, size, type Cidr } from "../cidr.ts";

export type Entry = { containerId: string; ifname: string; address: number; pod?: string; createdAt: number };

/** Where entries persist; the agent gives an SQLite one, tests an in-memory one. */
export interface AllocStore {
  load(): Entry[];
  put(e: Entry): void;
  remove(e: Entry): void;
}

export class RangeFullError extends Error {
  constructor(readonly range: string) {
    super(`no free address left in ${range}`);
    this.name = "RangeFullError";
  }
}

const key = (cid: string, ifname: string) => `${cid}\u0000${ifname}`;

export class Allocator {
  private byKey = new Map<string, Entry>();
  private used: Uint8Array;
  private cursor = 0;

  constructor(readonly range: Cidr, private store: AllocStore, private now: () => number = Date.now) {
    this.used = new Uint8Array(size(range));
    this.used[0] = 1; // network address
    this.used[this.used.length - 1] = 1; // broadcast address
    for (const e of store.load()) {
      if (!contains(range, e.address)) continue;
      this.byKey.set(key(e.containerId, e.ifname), e);
      this.used[e.address - range.base] = 1;
    }
  }

  get capacity(): number {
    return Math.max(0, this.used.length - 2);
  }

  get active(): number {
    return this.byKey.size;
  }

  allocate(containerId: string, ifname: string, pod?: string): { entry: Entry; created: boolean } {
    const have = this.byKey.get(key(containerId, ifname));
    if (have) return { entry: have, created: false };
    const n = this.used.length;
    for (let i = 0; i < n; i++) {
      const off = (this.cursor + i) % n;
      if (this.used[off]) continue;
      const entry: Entry = { containerId, ifname, address: this.range.base + off, createdAt: this.now(), ...(pod ? { pod } : {}) };
      this.store.put(entry);
      this.used[off] = 1;
      this.byKey.set(key(containerId, ifname), entry);
      this.cursor = (off + 1) % n;
      return { entry, created: true };
    }
    throw new RangeFullError(`${numToIp(this.range.base)}/${this.range.prefix}`);
  }

  /** Release one attachment, or every attachment of the container when `ifname` is omitted. */
  release(containerId: string, ifname?: string): Entry[] {
    const one = ifname === undefined ? undefined : this.byKey.get(key(containerId, ifname));
    const gone = ifname === undefined ? this.lookup(containerId) : one ? [one] : [];
    for (const e of gone) {
      this.store.remove(e);
      this.byKey.delete(key(e.containerId, e.ifname));
      this.used[e.address - this.range.base] = 0;
    }
    return gone;
  }

  lookup(containerId: string): Entry[] {
    return this.list().filter((e) => e.containerId === containerId);
  }

  list(): Entry[] {
    return [...this.byKey.values()];
  }
}
