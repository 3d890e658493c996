/**
 * The host layer: links, addresses, routes, neighbours, FDB entries and sysctls of one
 * network namespace, behind the small `NetHost` interface that callers receive.
 * `openHost()` gives the kernel implementation (rtnetlink over bun:ffi, no processes
 * spawned); tests can hand callers anything else that fits the interface.
 */
import { openSync, closeSync, readFileSync, writeFileSync } from "node:fs";
import { NetlinkSocket, NetlinkError, ENODEV, ESRCH, EADDRNOTAVAIL, ENOENT } from "./netlink.ts";
import { inNetns } from "./netns.ts";
import * as c from "./netlink-codec.ts";

export type Link = {
  index: number;
  name: string;
  kind?: string;
  mtu: number;
  mac: string;
  up: boolean;
  master?: number;
  group: number;
};

export type LinkChange = {
  up?: boolean;
  mtu?: number;
  master?: number;
  mac?: string;
  group?: number;
  name?: string;
  /** The transmit queue's length, in packets. */
  txqlen?: number;
};
export type Route = { dst: string; gw?: string; dev?: number; table: number; protocol: number; scope: number };
export type Neighbour = { dev: number; ip: string; mac?: string; state: number };
/** `sticky`: a bridge entry that stays on its port when the MAC shows up on another (addPortFdb's). */
export type FdbEntry = { dev: number; mac: string; dst?: string; master?: number; state?: number; sticky?: boolean };

export type VethSpec = {
  name: string;
  mtu: number;
  /** The peer, created directly inside the namespace at `peerNetns` (or here). */
  peer: { name: string; netns?: string; mac?: string };
};
export type VxlanSpec = {
  name: string;
  vni: number;
  port: number;
  local?: string;
  dev?: number;
  mtu: number;
  master?: number;
  learning?: boolean;
};

export interface NetHost {
  /** The namespace path this host acts on; undefined for the caller's own. */
  readonly netns?: string;
  links(): Link[];
  link(name: string): Link | undefined;
  addBridge(name: string, o: { mtu: number; mac?: string }): Link;
  addVeth(spec: VethSpec): Link;
  addVxlan(spec: VxlanSpec): Link;
  setLink(index: number, o: LinkChange): void;
  setHairpin(index: number, on: boolean): void;
  /**
   * A bridge port's flags: whether the bridge learns source MACs on it, floods unknown
   * unicast to it, and `isolated`: frames that come in on an isolated port never leave
   * through another isolated one (only through the others, and to the bridge itself).
   */
  setBridgePort(index: number, o: { learning?: boolean; unicastFlood?: boolean; isolated?: boolean }): void;
  /** Delete a link; false when it was already gone. */
  delLink(name: string): boolean;
  /** Delete every link in `group` with one request (one RCU grace period for all). */
  delLinkGroup(group: number): void;
  addrs(index?: number): { index: number; cidr: string }[];
  addAddr(index: number, cidr: string): void;
  delAddr(index: number, cidr: string): boolean;
  routes(): Route[];
  addRoute(r: { dst: string; gw?: string; dev: number; scope?: number }): void;
  delRoute(r: { dst: string; gw?: string; dev?: number }): boolean;
  neighbours(dev?: number): Neighbour[];
  setNeighbour(n: { dev: number; ip: string; mac: string }): void;
  delNeighbour(n: { dev: number; ip: string }): boolean;
  fdb(dev?: number): FdbEntry[];
  addFdb(e: { dev: number; mac: string; dst: string }): void;
  /** False when the MAC had no entry (the kernel does not say when only the remote was missing). */
  delFdb(e: { dev: number; mac: string; dst?: string }): boolean;
  /**
   * A static, sticky entry in the bridge's own table: frames to `mac` leave through bridge
   * port `port` (replaces a learned one). Sticky: a frame from `mac` arriving on another
   * port does not move it there, as learning would move a plain static entry.
   */
  addPortFdb(e: { port: number; mac: string }): void;
  /** False when there was none. */
  delPortFdb(e: { port: number; mac: string }): boolean;
  sysctl(key: string): string;
  setSysctl(key: string, value: string): void;
  close(): void;
}

/** Open the kernel host layer for the current namespace, or the one at `netns`. */
export function openHost(netns?: string): NetHost {
  const sock = netns ? inNetns(netns, () => new NetlinkSocket()) : new NetlinkSocket();
  return new KernelHost(sock, netns);
}

const gone = (e: unknown) => e instanceof NetlinkError && [ENODEV, ESRCH, EADDRNOTAVAIL, ENOENT].includes(e.errno);

function splitCidr(cidr: string): [string, number] {
  const [ip, len] = cidr.split("/");
  return [ip!, len === undefined ? 32 : Number(len)];
}

class KernelHost implements NetHost {
  constructor(
    private sock: NetlinkSocket,
    readonly netns?: string,
  ) {}

  close(): void {
    this.sock.close();
  }

  links(): Link[] {
    return this.sock.dump("list links", c.RTM.GETLINK, c.ifinfomsg()).map((m) => parseLink(m.payload));
  }

  link(name: string): Link | undefined {
    try {
      const m = this.sock.get(`get link ${name}`, c.RTM.GETLINK, c.ifinfomsg(), [c.strAttr(c.IFLA.IFNAME, name)]);
      return m ? parseLink(m.payload) : undefined;
    } catch (e) {
      if (gone(e)) return undefined;
      throw e;
    }
  }

  private newLink(op: string, name: string, attrs: c.Attr[], up = true): Link {
    this.sock.request(
      op,
      c.RTM.NEWLINK,
      c.NLM_F.CREATE | c.NLM_F.EXCL,
      c.ifinfomsg(up ? { flags: c.IFF_UP, change: c.IFF_UP } : {}),
      [c.strAttr(c.IFLA.IFNAME, name), ...attrs],
    );
    const l = this.link(name);
    if (!l) throw new Error(`${op}: link ${name} vanished right after creation`);
    return l;
  }

  addBridge(name: string, o: { mtu: number; mac?: string }): Link {
    return this.newLink(`add bridge ${name}`, name, [
      c.u32Attr(c.IFLA.MTU, o.mtu),
      ...(o.mac ? [c.attr(c.IFLA.ADDRESS, c.macBytes(o.mac))] : []),
      c.nest(c.IFLA.LINKINFO, [c.strAttr(c.IFLA_INFO.KIND, "bridge")]),
    ]);
  }

  addVeth(s: VethSpec): Link {
    const peerAttrs: c.Attr[] = [c.strAttr(c.IFLA.IFNAME, s.peer.name), c.u32Attr(c.IFLA.MTU, s.mtu)];
    if (s.peer.mac) peerAttrs.push(c.attr(c.IFLA.ADDRESS, c.macBytes(s.peer.mac)));
    let fd = -1;
    try {
      if (s.peer.netns) {
        fd = openSync(s.peer.netns, "r");
        peerAttrs.push(c.u32Attr(c.IFLA.NET_NS_FD, fd));
      }
      // Neither brought up nor enslaved in the same message: this kernel answers ENOTCONN
      // to a veth created with IFF_UP and EOPNOTSUPP to one created with IFLA_MASTER;
      // callers set the master and each end up with setLink once it is configured.
      const peer = new Uint8Array([...c.ifinfomsg(), ...c.encodeAttrs(peerAttrs)]);
      return this.newLink(
        `add veth ${s.name} (peer ${s.peer.name})`,
        s.name,
        [
          c.u32Attr(c.IFLA.MTU, s.mtu),
          c.nest(c.IFLA.LINKINFO, [
            c.strAttr(c.IFLA_INFO.KIND, "veth"),
            c.nest(c.IFLA_INFO.DATA, [c.attr(c.VETH_INFO_PEER, peer)]),
          ]),
        ],
        false,
      );
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }

  addVxlan(s: VxlanSpec): Link {
    const data: c.Attr[] = [
      c.u32Attr(c.IFLA_VXLAN.ID, s.vni),
      c.u16Attr(c.IFLA_VXLAN.PORT, s.port, true),
      c.u8Attr(c.IFLA_VXLAN.LEARNING, s.learning ? 1 : 0),
    ];
    if (s.local) data.push(c.attr(c.IFLA_VXLAN.LOCAL, c.ipv4Bytes(s.local)));
    if (s.dev) data.push(c.u32Attr(c.IFLA_VXLAN.LINK, s.dev));
    return this.newLink(`add vxlan ${s.name}`, s.name, [
      c.u32Attr(c.IFLA.MTU, s.mtu),
      ...(s.master ? [c.u32Attr(c.IFLA.MASTER, s.master)] : []),
      c.nest(c.IFLA.LINKINFO, [c.strAttr(c.IFLA_INFO.KIND, "vxlan"), c.nest(c.IFLA_INFO.DATA, data)]),
    ]);
  }

  setLink(index: number, o: LinkChange): void {
    const attrs: c.Attr[] = [];
    if (o.group !== undefined) attrs.push(c.u32Attr(c.IFLA.GROUP, o.group));
    if (o.name !== undefined) attrs.push(c.strAttr(c.IFLA.IFNAME, o.name));
    if (o.mtu !== undefined) attrs.push(c.u32Attr(c.IFLA.MTU, o.mtu));
    if (o.master !== undefined) attrs.push(c.u32Attr(c.IFLA.MASTER, o.master));
    if (o.mac !== undefined) attrs.push(c.attr(c.IFLA.ADDRESS, c.macBytes(o.mac)));
    if (o.txqlen !== undefined) attrs.push(c.u32Attr(c.IFLA.TXQLEN, o.txqlen));
    const flags = o.up === undefined ? {} : { flags: o.up ? c.IFF_UP : 0, change: c.IFF_UP };
    this.sock.request(`set link ${index}`, c.RTM.NEWLINK, 0, c.ifinfomsg({ index, ...flags }), attrs);
  }

  setHairpin(index: number, on: boolean): void {
    this.sock.request(`set hairpin on link ${index}`, c.RTM.SETLINK, 0, c.ifinfomsg({ family: c.AF_BRIDGE, index }), [
      { type: c.IFLA.PROTINFO | c.NLA_F_NESTED, data: c.encodeAttrs([c.u8Attr(c.IFLA_BRPORT_MODE, on ? 1 : 0)]) },
    ]);
  }

  setBridgePort(index: number, o: { learning?: boolean; unicastFlood?: boolean; isolated?: boolean }): void {
    const flags: c.Attr[] = [];
    if (o.isolated !== undefined) flags.push(c.u8Attr(c.IFLA_BRPORT.ISOLATED, o.isolated ? 1 : 0));
    if (o.learning !== undefined) flags.push(c.u8Attr(c.IFLA_BRPORT.LEARNING, o.learning ? 1 : 0));
    if (o.unicastFlood !== undefined) flags.push(c.u8Attr(c.IFLA_BRPORT.UNICAST_FLOOD, o.unicastFlood ? 1 : 0));
    this.sock.request(`set bridge port ${index}`, c.RTM.SETLINK, 0, c.ifinfomsg({ family: c.AF_BRIDGE, index }), [
      { type: c.IFLA.PROTINFO | c.NLA_F_NESTED, data: c.encodeAttrs(flags) },
    ]);
  }

  delLink(name: string): boolean {
    try {
      this.sock.request(`delete link ${name}`, c.RTM.DELLINK, 0, c.ifinfomsg(), [c.strAttr(c.IFLA.IFNAME, name)]);
      return true;
    } catch (e) {
      if (gone(e)) return false;
      throw e;
    }
  }

  delLinkGroup(group: number): void {
    try {
      this.sock.request(`delete link group ${group}`, c.RTM.DELLINK, 0, c.ifinfomsg(), [
        c.u32Attr(c.IFLA.GROUP, group),
      ]);
    } catch (e) {
      if (!gone(e)) throw e;
    }
  }

  addrs(index?: number): { index: number; cidr: string }[] {
    return this.sock
      .dump("list addresses", c.RTM.GETADDR, c.ifaddrmsg({ family: c.AF_INET, prefixlen: 0, index: 0 }))
      .map((m) => {
        const dv = new DataView(m.payload.buffer, m.payload.byteOffset);
        const a = c.decodeAttrs(m.payload.subarray(8));
        const ip = a.get(c.IFA.LOCAL) ?? a.get(c.IFA.ADDRESS);
        return { index: dv.getUint32(4, true), cidr: `${ip ? c.ipv4String(ip) : "?"}/${m.payload[1]}` };
      })
      .filter((x) => index === undefined || x.index === index);
  }

  addAddr(index: number, cidr: string): void {
    const [ip, len] = splitCidr(cidr);
    const b = c.ipv4Bytes(ip);
    this.sock.request(
      `add address ${cidr}`,
      c.RTM.NEWADDR,
      c.NLM_F.CREATE | c.NLM_F.EXCL,
      c.ifaddrmsg({ family: c.AF_INET, prefixlen: len, index }),
      [c.attr(c.IFA.LOCAL, b), c.attr(c.IFA.ADDRESS, b)],
    );
  }

  delAddr(index: number, cidr: string): boolean {
    const [ip, len] = splitCidr(cidr);
    try {
      this.sock.request(
        `delete address ${cidr}`,
        c.RTM.DELADDR,
        0,
        c.ifaddrmsg({ family: c.AF_INET, prefixlen: len, index }),
        [c.attr(c.IFA.LOCAL, c.ipv4Bytes(ip))],
      );
      return true;
    } catch (e) {
      if (gone(e)) return false;
      throw e;
    }
  }

  routes(): Route[] {
    return this.sock.dump("list routes", c.RTM.GETROUTE, c.rtmsg({ family: c.AF_INET, dstLen: 0 })).map((m) => {
      const p = m.payload;
      const a = c.decodeAttrs(p.subarray(12));
      const dst = a.get(c.RTA.DST);
      const gw = a.get(c.RTA.GATEWAY);
      return {
        dst: `${dst ? c.ipv4String(dst) : "0.0.0.0"}/${p[1]}`,
        gw: gw ? c.ipv4String(gw) : undefined,
        dev: c.readU32(a.get(c.RTA.OIF)),
        table: c.readU32(a.get(c.RTA.TABLE)) ?? p[4]!,
        protocol: p[5]!,
        scope: p[6]!,
      };
    });
  }

  private routeAttrs(r: { dst: string; gw?: string; dev?: number }): [Uint8Array, c.Attr[]] {
    const [ip, len] = splitCidr(r.dst);
    const attrs: c.Attr[] = [];
    if (len > 0) attrs.push(c.attr(c.RTA.DST, c.ipv4Bytes(ip)));
    if (r.gw) attrs.push(c.attr(c.RTA.GATEWAY, c.ipv4Bytes(r.gw)));
    if (r.dev) attrs.push(c.u32Attr(c.RTA.OIF, r.dev));
    return [c.rtmsg({ family: c.AF_INET, dstLen: len, scope: r.gw ? c.RT_SCOPE.UNIVERSE : c.RT_SCOPE.LINK }), attrs];
  }

  addRoute(r: { dst: string; gw?: string; dev: number; scope?: number }): void {
    const [hdr, attrs] = this.routeAttrs(r);
    if (r.scope !== undefined) hdr[6] = r.scope;
    this.sock.request(
      `add route ${r.dst}${r.gw ? ` via ${r.gw}` : ""}`,
      c.RTM.NEWROUTE,
      c.NLM_F.CREATE | c.NLM_F.EXCL,
      hdr,
      attrs,
    );
  }

  delRoute(r: { dst: string; gw?: string; dev?: number }): boolean {
    const [hdr, attrs] = this.routeAttrs(r);
    hdr[6] = 253 + 2; // RT_SCOPE_NOWHERE: match a route of any scope
    try {
      this.sock.request(`delete route ${r.dst}`, c.RTM.DELROUTE, 0, hdr, attrs);
      return true;
    } catch (e) {
      if (gone(e)) return false;
      throw e;
    }
  }

  neighbours(dev?: number): Neighbour[] {
    return this.sock
      .dump("list neighbours", c.RTM.GETNEIGH, c.ndmsg({ family: c.AF_INET, index: 0, state: 0, flags: 0 }))
      .map((m) => {
        const dv = new DataView(m.payload.buffer, m.payload.byteOffset);
        const a = c.decodeAttrs(m.payload.subarray(12));
        const ip = a.get(c.NDA.DST);
        const mac = a.get(c.NDA.LLADDR);
        return {
          dev: dv.getInt32(4, true),
          ip: ip ? c.ipv4String(ip) : "",
          mac: mac ? c.macString(mac) : undefined,
          state: dv.getUint16(8, true),
        };
      })
      .filter((n) => dev === undefined || n.dev === dev);
  }

  setNeighbour(n: { dev: number; ip: string; mac: string }): void {
    this.sock.request(
      `set neighbour ${n.ip}`,
      c.RTM.NEWNEIGH,
      c.NLM_F.CREATE | c.NLM_F.REPLACE,
      c.ndmsg({ family: c.AF_INET, index: n.dev, state: c.NUD.PERMANENT, flags: 0 }),
      [c.attr(c.NDA.DST, c.ipv4Bytes(n.ip)), c.attr(c.NDA.LLADDR, c.macBytes(n.mac))],
    );
  }

  delNeighbour(n: { dev: number; ip: string }): boolean {
    try {
      this.sock.request(
        `delete neighbour ${n.ip}`,
        c.RTM.DELNEIGH,
        0,
        c.ndmsg({ family: c.AF_INET, index: n.dev, state: 0, flags: 0 }),
        [c.attr(c.NDA.DST, c.ipv4Bytes(n.ip))],
      );
      return true;
    } catch (e) {
      if (gone(e)) return false;
      throw e;
    }
  }

  fdb(dev?: number): FdbEntry[] {
    return this.sock
      .dump("list fdb", c.RTM.GETNEIGH, c.ndmsg({ family: c.AF_BRIDGE, index: 0, state: 0, flags: 0 }))
      .map((m) => {
        const dv = new DataView(m.payload.buffer, m.payload.byteOffset);
        const a = c.decodeAttrs(m.payload.subarray(12));
        const dst = a.get(c.NDA.DST);
        return {
          dev: dv.getInt32(4, true),
          mac: c.macString(a.get(c.NDA.LLADDR) ?? new Uint8Array(6)),
          dst: dst ? c.ipv4String(dst) : undefined,
          master: c.readU32(a.get(c.NDA.MASTER)),
          state: dv.getUint16(8, true),
          sticky: (dv.getUint8(10) & c.NTF.STICKY) !== 0,
        };
      })
      .filter((e) => dev === undefined || e.dev === dev);
  }

  addFdb(e: { dev: number; mac: string; dst: string }): void {
    // APPEND, not REPLACE: the all-zero flood MAC has one entry per remote peer.
    this.sock.request(
      `add fdb ${e.mac} dst ${e.dst}`,
      c.RTM.NEWNEIGH,
      c.NLM_F.CREATE | 0x800,
      c.ndmsg({ family: c.AF_BRIDGE, index: e.dev, state: c.NUD.PERMANENT | c.NUD.NOARP, flags: c.NTF.SELF }),
      [c.attr(c.NDA.LLADDR, c.macBytes(e.mac)), c.attr(c.NDA.DST, c.ipv4Bytes(e.dst))],
    );
  }

  delFdb(e: { dev: number; mac: string; dst?: string }): boolean {
    const attrs = [c.attr(c.NDA.LLADDR, c.macBytes(e.mac))];
    if (e.dst) attrs.push(c.attr(c.NDA.DST, c.ipv4Bytes(e.dst)));
    try {
      this.sock.request(
        `delete fdb ${e.mac}`,
        c.RTM.DELNEIGH,
        0,
        c.ndmsg({ family: c.AF_BRIDGE, index: e.dev, state: 0, flags: c.NTF.SELF }),
        attrs,
      );
      return true;
    } catch (e2) {
      if (gone(e2)) return false;
      throw e2;
    }
  }

  addPortFdb(e: { port: number; mac: string }): void {
    this.sock.request(
      `add bridge fdb ${e.mac} on link ${e.port}`,
      c.RTM.NEWNEIGH,
      c.NLM_F.CREATE | c.NLM_F.REPLACE,
      c.ndmsg({ family: c.AF_BRIDGE, index: e.port, state: c.NUD.NOARP, flags: c.NTF.MASTER | c.NTF.STICKY }),
      [c.attr(c.NDA.LLADDR, c.macBytes(e.mac))],
    );
  }

  delPortFdb(e: { port: number; mac: string }): boolean {
    try {
      this.sock.request(
        `delete bridge fdb ${e.mac} on link ${e.port}`,
        c.RTM.DELNEIGH,
        0,
        c.ndmsg({ family: c.AF_BRIDGE, index: e.port, state: 0, flags: c.NTF.MASTER }),
        [c.attr(c.NDA.LLADDR, c.macBytes(e.mac))],
      );
      return true;
    } catch (e2) {
      if (gone(e2)) return false;
      throw e2;
    }
  }

  /** /proc/sys/net is per namespace, so read and write it from inside ours. */
  sysctl(key: string): string {
    const path = `/proc/sys/${key.replaceAll(".", "/")}`;
    const read = () => readFileSync(path, "utf8").trim();
    return this.netns ? inNetns(this.netns, read) : read();
  }

  setSysctl(key: string, value: string): void {
    const path = `/proc/sys/${key.replaceAll(".", "/")}`;
    const write = () => writeFileSync(path, value);
    if (this.netns) inNetns(this.netns, write);
    else write();
  }
}

function parseLink(p: Uint8Array): Link {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const a = c.decodeAttrs(p.subarray(16));
  const info = a.get(c.IFLA.LINKINFO);
  const kind = info ? c.decodeAttrs(info).get(c.IFLA_INFO.KIND) : undefined;
  const mac = a.get(c.IFLA.ADDRESS);
  return {
    index: dv.getInt32(4, true),
    name: c.cString(a.get(c.IFLA.IFNAME) ?? new Uint8Array()),
    kind: kind ? c.cString(kind) : undefined,
    mtu: c.readU32(a.get(c.IFLA.MTU)) ?? 0,
    mac: mac ? c.macString(mac) : "",
    up: (dv.getUint32(8, true) & c.IFF_UP) !== 0,
    master: c.readU32(a.get(c.IFLA.MASTER)),
    group: c.readU32(a.get(c.IFLA.GROUP)) ?? 0,
  };
}
