/**
 * A synchronous rtnetlink socket bound to one network namespace.
 *
 * A netlink socket belongs to the namespace it was created in, so to work on another
 * namespace we switch this thread into it just long enough to call socket(2) and switch
 * back (see netns.ts); every later request on that socket acts there. Calls block: the
 * kernel answers rtnetlink requests in microseconds, and blocking keeps the plugin free
 * of any event-loop work while it holds namespace file descriptors.
 */
import { libc, errno, strerror } from "./libc.ts";
import {
  decodeAttrs,
  decodeMessages,
  encodeMessage,
  NLM_F,
  NLMSG_DONE,
  NLMSG_ERROR,
  cString,
  type Attr,
  type RawMessage,
} from "./netlink-codec.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

/** A netlink request the kernel refused; `errno` is the positive errno (e.g. 17 EEXIST). */
export class NetlinkError extends Error {
  constructor(
    readonly op: string,
    readonly errno: number,
    readonly detail?: string,
  ) {
    super(`${op}: ${strerror(errno)}${detail ? ` (${detail})` : ""}`);
    this.name = "NetlinkError";
  }
}

export const ENOENT = 2;
export const ESRCH = 3;
export const EEXIST = 17;
export const ENODEV = 19;
export const EADDRNOTAVAIL = 99;

/**
 * The receive buffer, one for every socket: calls block and never interleave, and what a
 * reply holds is copied out before the next recv. A socket is opened per CNI call (in the
 * pod's namespace), and 256 kB of its own each time is garbage the agent piles up.
 */
let recvBuf: Uint8Array | undefined;

function sharedRecvBuf(): Uint8Array {
  recvBuf ??= new Uint8Array(1 << 18);
  return recvBuf;
}

export class NetlinkSocket {
  private fd: number;
  private seq = Math.floor(Math.random() * 1e6);
  private buf = sharedRecvBuf();

  constructor() {
    this.fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (this.fd < 0) throw new NetlinkError("socket", errno());
    const one = Int32Array.of(1);
    libc.setsockopt(this.fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    libc.setsockopt(this.fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
  }

  close(): void {
    if (this.fd >= 0) libc.close(this.fd);
    this.fd = -1;
  }

  /** Send a request and wait for its acknowledgement. */
  request(op: string, type: number, flags: number, header: Uint8Array, attrs: Attr[]): void {
    this.exchange(op, encodeMessage(type, flags | NLM_F.REQUEST | NLM_F.ACK, ++this.seq, header, attrs), false);
  }

  /** Send a get request and return its one answer. */
  get(op: string, type: number, header: Uint8Array, attrs: Attr[]): RawMessage | undefined {
    return this.exchange(op, encodeMessage(type, NLM_F.REQUEST, ++this.seq, header, attrs), false)[0];
  }

  /** Send a dump request and collect every reply message. */
  dump(op: string, type: number, header: Uint8Array, attrs: Attr[] = []): RawMessage[] {
    return this.exchange(op, encodeMessage(type, NLM_F.REQUEST | NLM_F.DUMP, ++this.seq, header, attrs), true);
  }

  private exchange(op: string, msg: Uint8Array, dump: boolean): RawMessage[] {
    const seq = this.seq;
    const sent = libc.send(this.fd, msg, msg.length, 0);
    if (sent < 0) throw new NetlinkError(`${op} (send)`, errno());
    const out: RawMessage[] = [];
    for (;;) {
      const n = libc.recv(this.fd, this.buf, this.buf.length, 0);
      if (n < 0) throw new NetlinkError(`${op} (recv)`, errno());
      for (const m of decodeMessages(this.buf.subarray(0, n))) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_DONE) return out;
        if (m.type === NLMSG_ERROR) {
          const code = -new DataView(m.payload.buffer, m.payload.byteOffset, 4).getInt32(0, true);
          if (code === 0) return out;
          let detail: string | undefined;
          if (m.flags & NLM_F_ACK_TLVS) {
            const tlv = decodeAttrs(m.payload.subarray(4 + 16));
            const text = tlv.get(NLMSGERR_ATTR_MSG);
            if (text) detail = cString(text);
          }
          throw new NetlinkError(op, code, detail);
        }
        out.push({ ...m, payload: m.payload.slice() });
        if (!dump) return out;
      }
    }
  }
}
