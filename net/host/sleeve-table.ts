/**
 * The sleeve's table on its way from the agent to the packet loops. The main thread
 * checks it and writes it as JSON with numbers (IPv4 as u32, MAC as a 48-bit number) and a
 * counter slot per send key; each worker parses that into Maps keyed by numbers, with
 * every MAC and flood entry already resolved to the neighbour it goes through, so a packet
 * costs one Map lookup and no string is built per packet.
 */
import { ptr } from "bun:ffi";
import { ipv4ToU32, parseKey } from "../sleeve/frame.ts";
import { ReplayWindow } from "../sleeve/replay.ts";
import { Aead } from "./sleeve-aead.ts";
import { sockaddrIn } from "./sleeve-sys.ts";

export type SleeveTable = {
  /** Our underlay IPv4 address (destination field of frames for us). */
  self: string;
  /** Directly connected neighbours we exchange sleeve frames with (the only accepted UDP sources), with their keys when sealed. */
  neighbours: { ip: string; sendKey?: string; recvKey?: string }[];
  /** Every peer reached over the sleeve: its underlay IP and the neighbour to send through (itself when direct). */
  routes: { dst: string; via: string }[];
  /** Pod MAC -> the peer (underlay IP) that has it. Unicast frames read from the TAP go by this; a miss goes to `flood` (dropped and counted when it is empty). */
  macs: { mac: string; peer: string }[];
  /** Peers that get a copy of broadcast, multicast and unknown-unicast frames (their dst; each copy goes through its route). */
  flood: string[];
  /** Addresses (overlay, e.g. peers' bridge IPs) from which heartbeat pings are accepted and answered. */
  pingFrom: string[];
  /** True when every data frame must be sealed (a password is set): plain data frames are then dropped. */
  sealed: boolean;
  /**
   * Every key (send and receive) of a live connection, in `neighbours` or not: the state
   * of any other key (its counter slot, replay window, cipher contexts) is dropped, as a
   * key is never used again once its connection ended. Absent: the neighbours' keys.
   */
  liveKeys?: string[];
};

export class SleeveTableError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "SleeveTableError";
  }
}

type WireNeighbour = { ip: number; sendKey?: string; sendSlot?: number; recvKey?: string };
type WireTable = {
  self: number;
  sealed: boolean;
  neighbours: WireNeighbour[];
  routes: [number, number][];
  macs: [number, number][];
  flood: number[];
  pingFrom: number[];
  liveKeys: string[];
};

export function macToNumber(mac: string): number {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac))
    throw new SleeveTableError("macs", `MAC ${JSON.stringify(mac)} is not aa:bb:cc:dd:ee:ff`);
  return Number.parseInt(mac.replaceAll(":", ""), 16);
}

/** The 6 bytes at buf[off] as the number macToNumber gives. */
export function macAt(buf: Uint8Array, off: number): number {
  const hi = (buf[off]! << 8) | buf[off + 1]!;
  const lo = ((buf[off + 2]! << 24) | (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!) >>> 0;
  return hi * 0x100000000 + lo;
}

function ip(field: string, s: string): number {
  try {
    return ipv4ToU32(s);
  } catch {
    throw new SleeveTableError(field, `${field}: ${JSON.stringify(s)} is not an IPv4 address`);
  }
}

function key(field: string, b64: string): string {
  try {
    parseKey(b64);
  } catch {
    throw new SleeveTableError(field, `${field}: not the base64 of 32 bytes`);
  }
  return b64;
}

/** Check `t` and write it for the workers; `slotOf` gives each send key its counter slot. */
export function serializeTable(t: SleeveTable, slotOf: (sendKey: string) => number): string {
  const neighbours = t.neighbours.map((n) => {
    const w: WireNeighbour = { ip: ip("neighbours.ip", n.ip) };
    if (n.sendKey !== undefined) {
      w.sendKey = key("neighbours.sendKey", n.sendKey);
      w.sendSlot = slotOf(n.sendKey);
    }
    if (n.recvKey !== undefined) w.recvKey = key("neighbours.recvKey", n.recvKey);
    return w;
  });
  const wire: WireTable = {
    self: ip("self", t.self),
    sealed: t.sealed === true,
    neighbours,
    routes: t.routes.map((r) => [ip("routes.dst", r.dst), ip("routes.via", r.via)]),
    macs: t.macs.map((m) => [macToNumber(m.mac.toLowerCase()), ip("macs.peer", m.peer)]),
    flood: t.flood.map((f) => ip("flood", f)),
    pingFrom: t.pingFrom.map((p) => ip("pingFrom", p)),
    liveKeys: (t.liveKeys ?? []).map((k) => key("liveKeys", k)),
  };
  return JSON.stringify(wire);
}

/** The keys of `t` whose state must be kept: its neighbours' and the live ones. */
export function keysInUse(t: {
  neighbours: { sendKey?: string; recvKey?: string }[];
  liveKeys?: string[];
}): Set<string> {
  const keys = new Set(t.liveKeys);
  for (const n of t.neighbours) for (const k of [n.sendKey, n.recvKey]) if (k) keys.add(k);
  return keys;
}

export type Neighbour = {
  ip: number;
  sa: Uint8Array;
  saPtr: number;
  /** Sealing with the send key, and its counter slot. */
  send: Aead | null;
  sendSlot: number;
  /** Opening with the receive key, and its replay window. */
  recv: Aead | null;
  window: ReplayWindow | null;
};
/** Where a frame for peer `dst` goes: through `nb`, or nowhere (no route). */
export type Target = { dst: number; nb: Neighbour | null };
export type CompiledTable = {
  self: number;
  sealed: boolean;
  neighbours: Map<number, Neighbour>;
  routes: Map<number, Target>;
  macs: Map<number, Target>;
  flood: Target[];
  pingFrom: Set<number>;
};

export const EMPTY_TABLE: CompiledTable = {
  self: 0,
  sealed: true,
  neighbours: new Map(),
  routes: new Map(),
  macs: new Map(),
  flood: [],
  pingFrom: new Set(),
};

/** The value for `key`, made and kept if missing. */
function cached<T>(m: Map<string, T>, key: string, make: () => T): T {
  let v = m.get(key);
  if (v === undefined) {
    v = make();
    m.set(key, v);
  }
  return v;
}

/** Forget the entries of keys not in `keep` (dead ones). */
function trim<T>(m: Map<string, T>, keep: Set<string>, drop?: (v: T) => void): void {
  for (const [k, v] of m) {
    if (keep.has(k)) continue;
    m.delete(k);
    drop?.(v);
  }
}

/**
 * Build a worker's table. `windows` keeps each receive key's replay window across tables
 * (a table change must not reopen the window to frames seen already: a key that leaves
 * the table may come back while its connection lives, with its sender's counter going
 * on), `aeads` each key's cipher contexts; both are dropped for keys that are dead (in
 * neither the neighbours nor the live keys).
 */
export function compileTable(
  json: string,
  port: number,
  windows: Map<string, ReplayWindow>,
  aeads: Map<string, Aead>,
): CompiledTable {
  const w = JSON.parse(json) as WireTable;
  const neighbours = new Map<number, Neighbour>();
  const keep = keysInUse(w);
  const aead = (k: string | undefined) => (k ? cached(aeads, k, () => new Aead(parseKey(k))) : null);
  for (const n of w.neighbours) {
    const sa = sockaddrIn(n.ip, port);
    neighbours.set(n.ip, {
      ip: n.ip,
      sa,
      saPtr: ptr(sa),
      send: aead(n.sendKey),
      sendSlot: n.sendSlot ?? -1,
      recv: aead(n.recvKey),
      window: n.recvKey ? cached(windows, n.recvKey, () => new ReplayWindow()) : null,
    });
  }
  trim(windows, keep);
  trim(aeads, keep, (a) => a.free());
  const routes = new Map<number, Target>();
  for (const [dst, via] of w.routes) routes.set(dst, { dst, nb: neighbours.get(via) ?? null });
  const target = (dst: number): Target => routes.get(dst) ?? { dst, nb: null };
  const macs = new Map<number, Target>();
  for (const [mac, peer] of w.macs) macs.set(mac, target(peer));
  return {
    self: w.self,
    sealed: w.sealed,
    neighbours,
    routes,
    macs,
    flood: w.flood.map(target),
    pingFrom: new Set(w.pingFrom),
  };
}
