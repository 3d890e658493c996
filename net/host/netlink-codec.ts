/**
 * rtnetlink message encoding and decoding (pure). Layouts follow <linux/netlink.h>,
 * <linux/rtnetlink.h>, <linux/if_link.h> and <linux/neighbour.h>; attributes are
 * type-length-value records aligned to 4 bytes.
 */

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
} as const;

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
} as const;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const NLA_F_NESTED = 0x8000;

export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  MASTER: 10,
  PROTINFO: 12,
  TXQLEN: 13,
  OPERSTATE: 16,
  LINKINFO: 18,
  GROUP: 27,
  NET_NS_FD: 28,
} as const;
export const IFLA_INFO = { KIND: 1, DATA: 2, SLAVE_KIND: 4 } as const;
export const VETH_INFO_PEER = 1;
export const IFLA_BRPORT_MODE = 4; // hairpin
export const IFLA_BRPORT = { LEARNING: 8, UNICAST_FLOOD: 9, ISOLATED: 33 } as const;
export const IFLA_VXLAN = { ID: 1, LINK: 3, LOCAL: 4, TTL: 5, LEARNING: 7, PORT: 15 } as const;
export const IFF_UP = 0x1;

export const IFA = { ADDRESS: 1, LOCAL: 2 } as const;
export const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, TABLE: 15 } as const;
export const RT_TABLE_MAIN = 254;
export const RTPROT_BOOT = 3;
export const RT_SCOPE = { UNIVERSE: 0, LINK: 253, HOST: 254 } as const;
export const RTN_UNICAST = 1;

export const NDA = { DST: 1, LLADDR: 2, MASTER: 9 } as const;
export const NUD = { REACHABLE: 0x02, NOARP: 0x40, PERMANENT: 0x80 } as const;
/** ndm_flags: STICKY keeps a bridge entry on its port when the MAC shows up on another. */
export const NTF = { SELF: 0x02, MASTER: 0x04, STICKY: 0x40 } as const;

const align4 = (n: number) => (n + 3) & ~3;

/** One rtattr: type plus payload, or nested children. */
export type Attr = { type: number; data: Uint8Array };

export function attr(type: number, data: Uint8Array): Attr {
  return { type, data };
}
export function u8Attr(type: number, v: number): Attr {
  return attr(type, Uint8Array.of(v));
}
export function u16Attr(type: number, v: number, bigEndian = false): Attr {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, !bigEndian);
  return attr(type, b);
}
export function u32Attr(type: number, v: number): Attr {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return attr(type, b);
}
export function strAttr(type: number, s: string): Attr {
  const enc = new TextEncoder().encode(s);
  const b = new Uint8Array(enc.length + 1);
  b.set(enc);
  return attr(type, b);
}
export function nest(type: number, children: Attr[]): Attr {
  return attr(type, encodeAttrs(children));
}

export function encodeAttrs(attrs: Attr[]): Uint8Array {
  const size = attrs.reduce((n, a) => n + align4(4 + a.data.length), 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let off = 0;
  for (const a of attrs) {
    dv.setUint16(off, 4 + a.data.length, true);
    dv.setUint16(off + 2, a.type, true);
    out.set(a.data, off + 4);
    off += align4(4 + a.data.length);
  }
  return out;
}

/** Attributes of a message body, by type (the nested flag masked off). */
export function decodeAttrs(buf: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = dv.getUint16(off, true);
    if (len < 4 || off + len > buf.length) break;
    out.set(dv.getUint16(off + 2, true) & 0x3fff, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

export function encodeMessage(
  type: number,
  flags: number,
  seq: number,
  header: Uint8Array,
  attrs: Attr[] = [],
): Uint8Array {
  const body = encodeAttrs(attrs);
  const len = 16 + align4(header.length) + body.length;
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, len, true);
  dv.setUint16(4, type, true);
  dv.setUint16(6, flags, true);
  dv.setUint32(8, seq, true);
  dv.setUint32(12, 0, true);
  out.set(header, 16);
  out.set(body, 16 + align4(header.length));
  return out;
}

export type RawMessage = { type: number; flags: number; seq: number; payload: Uint8Array };

/** Split one datagram into netlink messages. */
export function decodeMessages(buf: Uint8Array): RawMessage[] {
  const out: RawMessage[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + 16 <= buf.length) {
    const len = dv.getUint32(off, true);
    if (len < 16 || off + len > buf.length) break;
    out.push({
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      payload: buf.subarray(off + 16, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** struct ifinfomsg (16 bytes). */
export function ifinfomsg(o: { family?: number; index?: number; flags?: number; change?: number } = {}): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  b[0] = o.family ?? AF_UNSPEC;
  dv.setInt32(4, o.index ?? 0, true);
  dv.setUint32(8, o.flags ?? 0, true);
  dv.setUint32(12, o.change ?? 0, true);
  return b;
}

/** struct ifaddrmsg (8 bytes). */
export function ifaddrmsg(o: { family: number; prefixlen: number; scope?: number; index: number }): Uint8Array {
  const b = new Uint8Array(8);
  b[0] = o.family;
  b[1] = o.prefixlen;
  b[3] = o.scope ?? 0;
  new DataView(b.buffer).setUint32(4, o.index, true);
  return b;
}

/** struct rtmsg (12 bytes). */
export function rtmsg(o: {
  family: number;
  dstLen: number;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
}): Uint8Array {
  return Uint8Array.of(
    o.family,
    o.dstLen,
    0,
    0,
    o.table ?? RT_TABLE_MAIN,
    o.protocol ?? RTPROT_BOOT,
    o.scope ?? RT_SCOPE.UNIVERSE,
    o.type ?? RTN_UNICAST,
    0,
    0,
    0,
    0,
  );
}

/** struct ndmsg (12 bytes). */
export function ndmsg(o: { family: number; index: number; state: number; flags: number }): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[0] = o.family;
  dv.setInt32(4, o.index, true);
  dv.setUint16(8, o.state, true);
  b[10] = o.flags;
  return b;
}

export function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(":").map((h) => parseInt(h, 16)));
}
export function macString(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
export function ipv4Bytes(ip: string): Uint8Array {
  return Uint8Array.from(ip.split(".").map(Number));
}
export function ipv4String(b: Uint8Array): string {
  return Array.from(b).join(".");
}
export function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return new TextDecoder().decode(end < 0 ? b : b.subarray(0, end));
}
export function readU32(b: Uint8Array | undefined): number | undefined {
  return b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) : undefined;
}
