/**
 * The gossiped topology: one entry per peer, owned and versioned by that peer.
 *
 * An entry travels as one text line, `<name> <version> <json>`, so a receiver reads the
 * name and version, compares them with what it has, and parses the JSON only when the
 * line is news. News is kept verbatim and forwarded verbatim: every peer parses each
 * version of each entry once, however many neighbours send it. `merge` returns only
 * what was new; nothing new means nothing to pass on, which is what makes gossip stop.
 *
 * `dupes` are the "name version" keys of lines we already had at that very version: the
 * router uses them to avoid sending a line back to a neighbour that has it.
 *
 * Reachability and routes are computed over established connections that both ends
 * list (a one-sided claim is not a path), breadth-first with neighbours in name order,
 * so every peer computes the same routes from the same topology.
 */

import { isPeerName, nameToNum } from "./peer-name.ts";

export type PeerEntry = {
  name: string;
  nickname: string;
  uid: string;
  version: number;
  /** Underlay addresses the peer can be reached at (VXLAN and mesh). */
  addresses: string[];
  /** Peer names of its established connections. */
  connections: string[];
  /** Addresses (as 32-bit numbers) of its pods and its bridge; MACs derive from them. */
  pods: number[];
  /** What the application gossips about this peer (the agent: its IPAM state); opaque here. */
  app?: unknown;
  /** Its WireGuard public key (base64), with encryption on; absent in older peers' entries. */
  wgKey?: string;
  /**
   * Fingerprints of the passwords it holds (net/crypto/rotation.ts), current first:
   * two while it rotates; absent without a password and in older peers' entries.
   */
  passwords?: string[];
  /** The address of its bridge (one of `pods`): the fast datapath's heartbeats go to it. Absent in older peers' entries. */
  bridge?: number;
};

type Stored = { entry: PeerEntry; line: string; num: number };
/** A line that was news, with its name as a number and its version. */
export type News = { line: string; num: number; version: number };

export function encodeEntry(e: PeerEntry): string {
  const fields = {
    k: e.nickname,
    u: e.uid,
    a: e.addresses,
    c: e.connections,
    p: e.pods,
    ...(e.app === undefined ? {} : { x: e.app }),
    ...(e.wgKey === undefined ? {} : { w: e.wgKey }),
    ...(e.passwords === undefined ? {} : { g: e.passwords }),
    ...(e.bridge === undefined ? {} : { b: e.bridge }),
  };
  return `${e.name} ${e.version} ${JSON.stringify(fields)}`;
}

export class TopologyError extends Error {}

/** Parse one line; throws TopologyError on anything malformed. */
export function decodeEntry(line: string): PeerEntry {
  const s1 = line.indexOf(" ");
  const s2 = line.indexOf(" ", s1 + 1);
  if (s1 <= 0 || s2 <= s1) throw new TopologyError("entry line has no name and version");
  const name = line.slice(0, s1);
  if (!isPeerName(name)) throw new TopologyError(`entry name "${name.slice(0, 40)}" is not a peer name`);
  const version = Number(line.slice(s1 + 1, s2));
  if (!Number.isSafeInteger(version) || version < 0) throw new TopologyError(`entry ${name} has a bad version`);
  let o: {
    k?: unknown;
    u?: unknown;
    a?: unknown;
    c?: unknown;
    p?: unknown;
    x?: unknown;
    w?: unknown;
    g?: unknown;
    b?: unknown;
  };
  try {
    o = JSON.parse(line.slice(s2 + 1));
  } catch {
    throw new TopologyError(`entry ${name} is not valid JSON`);
  }
  const strs = (x: unknown) => Array.isArray(x) && x.every((v) => typeof v === "string");
  if (
    typeof o !== "object" ||
    o === null ||
    typeof o.k !== "string" ||
    typeof o.u !== "string" ||
    !strs(o.a) ||
    !strs(o.c) ||
    !Array.isArray(o.p) ||
    !o.p.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32) ||
    (o.w !== undefined && typeof o.w !== "string") ||
    (o.g !== undefined && (!strs(o.g) || (o.g as string[]).length > 2)) ||
    (o.b !== undefined && !(Number.isInteger(o.b) && (o.b as number) >= 0 && (o.b as number) < 2 ** 32))
  ) {
    throw new TopologyError(`entry ${name} has missing or mistyped fields`);
  }
  const c = o.c as string[];
  // Peers send their connections sorted; sort only when one does not.
  for (let i = 1; i < c.length; i++)
    if (c[i - 1]! > c[i]!) {
      c.sort();
      break;
    }
  return {
    name,
    nickname: o.k,
    uid: o.u,
    version,
    addresses: o.a as string[],
    connections: c,
    pods: o.p as number[],
    ...(o.x === undefined ? {} : { app: o.x }),
    ...(o.w === undefined ? {} : { wgKey: o.w as string }),
    ...(o.g === undefined ? {} : { passwords: o.g as string[] }),
    ...(o.b === undefined ? {} : { bridge: o.b as number }),
  };
}

export class Topology {
  private peers = new Map<string, Stored>();
  private byNum = new Map<number, Stored>();
  /** Routes from us, cached until the topology changes. */
  private ownRoutes?: Map<string, string>;

  constructor(readonly self: string) {}

  get size(): number {
    return this.peers.size;
  }

  get(name: string): PeerEntry | undefined {
    return this.peers.get(name)?.entry;
  }

  entries(): PeerEntry[] {
    return [...this.peers.values()].map((s) => s.entry);
  }

  /** (name number, version) of every entry. */
  digest(): { num: number; version: number }[] {
    return [...this.peers.values()].map((s) => ({ num: s.num, version: s.entry.version }));
  }

  versionOf(num: number): number | undefined {
    return this.byNum.get(num)?.entry.version;
  }

  lineOf(num: number): string | undefined {
    return this.byNum.get(num)?.line;
  }

  line(name: string): string | undefined {
    return this.peers.get(name)?.line;
  }

  private store(entry: PeerEntry, line: string): Stored {
    const st = { entry, line, num: this.peers.get(entry.name)?.num ?? nameToNum(entry.name) };
    this.peers.set(entry.name, st);
    this.byNum.set(st.num, st);
    this.ownRoutes = undefined;
    return st;
  }

  /** Set our own entry (callers bump the version). */
  setOwn(e: PeerEntry): string {
    const line = encodeEntry(e);
    this.store({ ...e, connections: [...e.connections].sort() }, line);
    return line;
  }

  /**
   * Merge received lines; returns the ones that were news (to forward), the names (as
   * numbers) of lines we already had at that version, and, separately, a newer entry
   * about ourselves (a previous incarnation), which the caller must outbid.
   */
  merge(lines: string[]): { news: News[]; dupes: number[]; aboutSelf?: PeerEntry } {
    const news: News[] = [];
    const dupes: number[] = [];
    let aboutSelf: PeerEntry | undefined;
    for (const line of lines) {
      const s1 = line.indexOf(" ");
      const s2 = line.indexOf(" ", s1 + 1);
      if (s1 <= 0 || s2 <= s1) throw new TopologyError("entry line has no name and version");
      const name = line.slice(0, s1);
      const version = Number(line.slice(s1 + 1, s2));
      const have = this.peers.get(name);
      if (have && have.entry.version >= version) {
        if (have.entry.version === version) dupes.push(have.num);
        continue;
      }
      const entry = decodeEntry(line);
      if (name === this.self) {
        aboutSelf = entry;
        continue;
      }
      const st = this.store(entry, line);
      news.push({ line, num: st.num, version });
    }
    return { news, dupes, aboutSelf };
  }

  forget(name: string): boolean {
    const st = this.peers.get(name);
    if (!st || name === this.self) return false;
    this.ownRoutes = undefined;
    this.byNum.delete(st.num);
    return this.peers.delete(name);
  }

  /** Is there a connection a-b that both a and b list? */
  private symmetric(a: PeerEntry, b: string): boolean {
    const other = this.peers.get(b)?.entry;
    return !!other && other.connections.includes(a.name);
  }

  /**
   * Unicast routes from `from`: for each reachable peer, the neighbour of `from` to send
   * through (itself when directly connected). Deterministic: BFS, neighbours in name order.
   */
  routes(from = this.self): Map<string, string> {
    if (from === this.self && this.ownRoutes) return this.ownRoutes;
    const via = new Map<string, string>([[from, from]]);
    let frontier = [from];
    while (frontier.length) {
      const next: string[] = [];
      for (const p of frontier) {
        const e = this.peers.get(p)?.entry;
        if (!e) continue;
        for (const n of e.connections) {
          if (via.has(n) || !this.symmetric(e, n)) continue;
          via.set(n, p === from ? n : via.get(p)!);
          next.push(n);
        }
      }
      frontier = next.sort();
    }
    if (from === this.self) this.ownRoutes = via;
    return via;
  }

  /** Peers reachable from us, ourselves included. */
  reachable(): Set<string> {
    return new Set(this.routes().keys());
  }
}
