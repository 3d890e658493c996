/**
 * The kernel's NFLOG messages over a netlink socket (NETLINK_NETFILTER, subsystem ULOG),
 * through bun:ffi: nftables' `log group N` sends each logged packet to whoever bound
 * group N. This kernel has no nft `queue`, but it has `log group`.
 *
 * The socket is non-blocking and read on a timer (`poll()`), so the controller's event
 * loop never waits on it; what arrives between two polls waits in the socket's buffer
 * (1 MiB). When drops come faster than that, the kernel discards messages (ENOBUFS):
 * they are counted as lost, and the nft counters of each chain's drop stay exact anyway.
 * Only the first 128 bytes of a packet are copied: its IP and transport headers.
 */
import { decodeAttrs, decodeMessages, encodeMessage, NLM_F, NLMSG_ERROR, u8Attr } from "./netlink-codec.ts";
import { errno, libc, strerror } from "./libc.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
const SO_RCVBUFFORCE = 33;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const ENOBUFS = 105;

const NFNL_SUBSYS_ULOG = 4;
const NFULNL_MSG_PACKET = 0;
const NFULNL_MSG_CONFIG = 1;
const NFULA_CFG_CMD = 1;
const NFULA_CFG_MODE = 2;
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_COPY_PACKET = 2;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;
const COPY_BYTES = 128;

export type LoggedPacket = {
  prefix: string;
  family: 4 | 6;
  saddr: string;
  daddr: string;
  protocol: "TCP" | "UDP" | "SCTP" | "ICMP" | string;
  sport?: number;
  dport?: number;
};

const PROTOCOLS: Record<number, string> = { 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP" };

/** One NFULNL_MSG_PACKET's attributes (after its 4-byte nfgenmsg) -> the packet's addresses and ports. */
export function decodeLogged(payload: Uint8Array): LoggedPacket | undefined {
  const attrs = decodeAttrs(payload.subarray(4));
  const prefixBytes = attrs.get(NFULA_PREFIX);
  const packet = attrs.get(NFULA_PAYLOAD);
  if (!packet || packet.length < 20) return undefined;
  const prefix = prefixBytes ? new TextDecoder().decode(prefixBytes).replace(/\0.*$/s, "") : "";
  const version = packet[0]! >> 4;
  let proto: number;
  let saddr: string;
  let daddr: string;
  let l4: Uint8Array;
  if (version === 4) {
    const ihl = (packet[0]! & 15) * 4;
    proto = packet[9]!;
    saddr = [...packet.subarray(12, 16)].join(".");
    daddr = [...packet.subarray(16, 20)].join(".");
    l4 = packet.subarray(ihl);
  } else if (version === 6 && packet.length >= 40) {
    proto = packet[6]!;
    saddr = ipv6Text(packet.subarray(8, 24));
    daddr = ipv6Text(packet.subarray(24, 40));
    l4 = packet.subarray(40);
  } else return undefined;
  const protocol = PROTOCOLS[proto] ?? String(proto);
  const hasPorts = proto === 6 || proto === 17 || proto === 132;
  const ports =
    hasPorts && l4.length >= 4 ? { sport: (l4[0]! << 8) | l4[1]!, dport: (l4[2]! << 8) | l4[3]! } : ({} as const);
  return { prefix, family: version === 4 ? 4 : 6, saddr, daddr, protocol, ...ports };
}

function ipv6Text(b: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // the longest run of zero groups becomes "::" (RFC 5952)
  const text = groups.join(":");
  const runs = [...text.matchAll(/(^|:)0(:0)+(:|$)/g)].sort((a, b) => b[0].length - a[0].length);
  return runs[0] ? text.replace(runs[0][0], "::") : text;
}

export class NflogSocket {
  private fd: number;
  private readonly buf = new Uint8Array(1 << 16);
  /** Messages the kernel could not queue for us (socket buffer full). */
  lost = 0;

  constructor(readonly group: number) {
    this.fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (this.fd < 0) throw new Error(`NFLOG socket: ${strerror(errno())}`);
    libc.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUFFORCE, Int32Array.of(1 << 20), 4);
    this.config([u8Attr(NFULA_CFG_CMD, NFULNL_CFG_CMD_BIND)]);
    const mode = new Uint8Array(8);
    new DataView(mode.buffer).setUint32(0, COPY_BYTES, false);
    mode[4] = NFULNL_COPY_PACKET;
    this.config([{ type: NFULA_CFG_MODE, data: mode.subarray(0, 6) }]);
  }

  private config(attrs: { type: number; data: Uint8Array }[]): void {
    // nfgenmsg: family AF_UNSPEC, version 0, res_id = the group (big-endian)
    const header = Uint8Array.of(0, 0, this.group >> 8, this.group & 255);
    const type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    const msg = encodeMessage(type, NLM_F.REQUEST | NLM_F.ACK, 1, header, attrs);
    if (libc.send(this.fd, msg, msg.length, 0) < 0) throw new Error(`NFLOG config: ${strerror(errno())}`);
    const n = libc.recv(this.fd, this.buf, this.buf.length, 0);
    if (n < 0) throw new Error(`NFLOG config: ${strerror(errno())}`);
    for (const m of decodeMessages(this.buf.subarray(0, n))) {
      if (m.type !== NLMSG_ERROR) continue;
      const code = -new DataView(m.payload.buffer, m.payload.byteOffset, 4).getInt32(0, true);
      if (code !== 0) throw new Error(`NFLOG group ${this.group}: ${strerror(code)}`);
    }
  }

  /** Every packet logged since the last call; never blocks. */
  poll(max = 10_000): LoggedPacket[] {
    const out: LoggedPacket[] = [];
    while (this.fd >= 0 && out.length < max) {
      const n = libc.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const e = errno();
        if (e === ENOBUFS) {
          this.lost++;
          continue;
        }
        if (e === EAGAIN) break;
        throw new Error(`NFLOG recv: ${strerror(e)}`);
      }
      for (const m of decodeMessages(this.buf.subarray(0, n))) {
        if (m.type !== ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) continue;
        const p = decodeLogged(m.payload);
        if (p) out.push(p);
      }
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) libc.close(this.fd);
    this.fd = -1;
  }
}
