/**
 * An in-memory NetHost: links, addresses and routes of a set of namespaces, enough to
 * run the agent's CNI executor in unit tests. `failOn(op)` makes the next call of that
 * operation throw, so tests can fail every step of ADD in turn and check the rollback.
 */
import type {
  FdbEntry,
  Link,
  LinkChange,
  NetHost,
  Neighbour,
  Route,
  VethSpec,
  VxlanSpec,
} from "../../net/host/host.ts";

type Ns = { links: Map<string, Link>; addrs: { index: number; cidr: string }[]; routes: Route[] };

export class FakeWorld {
  namespaces = new Map<string, Ns>();
  private nextIndex = 2;
  private faults = new Set<string>();
  calls: string[] = [];

  ns(path: string): Ns {
    let n = this.namespaces.get(path);
    if (!n) {
      n = {
        links: new Map([["lo", { index: 1, name: "lo", mtu: 65536, mac: "00:00:00:00:00:00", up: true, group: 0 }]]),
        addrs: [],
        routes: [],
      };
      this.namespaces.set(path, n);
    }
    return n;
  }

  failOn(op: string): void {
    this.faults.add(op);
  }

  step(op: string): void {
    this.calls.push(op);
    if (this.faults.delete(op)) throw new Error(`injected failure in ${op}`);
  }

  index(): number {
    return this.nextIndex++;
  }

  host(path = "root"): NetHost {
    return new FakeHost(this, path);
  }
}

const fakeMac = (i: number) =>
  `02:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;

class FakeHost implements NetHost {
  constructor(
    private w: FakeWorld,
    readonly netns: string,
  ) {}
  private get n() {
    return this.w.ns(this.netns);
  }
  private byIndex(index: number): Link {
    const l = [...this.n.links.values()].find((x) => x.index === index);
    if (!l) throw Object.assign(new Error(`no link ${index}`), { errno: 19 });
    return l;
  }
  links(): Link[] {
    return [...this.n.links.values()].map((l) => ({ ...l }));
  }
  link(name: string): Link | undefined {
    const l = this.n.links.get(name);
    return l && { ...l };
  }
  addBridge(name: string, o: { mtu: number; mac?: string }): Link {
    this.w.step("addBridge");
    const i = this.w.index();
    const l: Link = { index: i, name, kind: "bridge", mtu: o.mtu, mac: o.mac ?? fakeMac(i), up: true, group: 0 };
    this.n.links.set(name, l);
    return { ...l };
  }
  addVeth(s: VethSpec): Link {
    this.w.step("addVeth");
    const peerNs = s.peer.netns ? this.w.ns(s.peer.netns) : this.n;
    if (this.n.links.has(s.name) || peerNs.links.has(s.peer.name))
      throw Object.assign(new Error("File exists"), { errno: 17 });
    const i = this.w.index();
    const l: Link = { index: i, name: s.name, kind: "veth", mtu: s.mtu, mac: fakeMac(i), up: false, group: 0 };
    const j = this.w.index();
    const p: Link & { peerOf?: string } = {
      index: j,
      name: s.peer.name,
      kind: "veth",
      mtu: s.mtu,
      mac: s.peer.mac ?? fakeMac(j),
      up: false,
      group: 0,
    };
    this.n.links.set(s.name, l);
    peerNs.links.set(s.peer.name, p);
    (l as Link & { peer?: { ns: string; index: number } }).peer = { ns: s.peer.netns ?? this.netns, index: j };
    return { ...l };
  }
  addVxlan(s: VxlanSpec): Link {
    this.w.step("addVxlan");
    const i = this.w.index();
    const l: Link = {
      index: i,
      name: s.name,
      kind: "vxlan",
      mtu: s.mtu,
      mac: fakeMac(i),
      up: true,
      group: 0,
      master: s.master,
    };
    this.n.links.set(s.name, l);
    return { ...l };
  }
  setLink(index: number, o: LinkChange): void {
    this.w.step("setLink");
    const l = this.byIndex(index);
    // like the kernel: taking a link down flushes the routes through it
    if (o.up === false) this.n.routes = this.n.routes.filter((r) => r.dev !== index);
    if (o.up !== undefined) l.up = o.up;
    if (o.mtu !== undefined) l.mtu = o.mtu;
    if (o.master !== undefined) l.master = o.master;
    if (o.mac !== undefined) l.mac = o.mac;
    if (o.group !== undefined) l.group = o.group;
    if (o.name !== undefined && o.name !== l.name) {
      if (l.up) throw Object.assign(new Error("Device or resource busy"), { errno: 16 });
      this.n.links.delete(l.name);
      l.name = o.name;
      this.n.links.set(l.name, l);
    }
  }
  setBridgePort(): void {
    this.w.step("setBridgePort");
  }
  setHairpin(): void {
    this.w.step("setHairpin");
  }
  delLink(name: string): boolean {
    this.w.step("delLink");
    const l = this.n.links.get(name) as (Link & { peer?: { ns: string; index: number } }) | undefined;
    if (!l) return false;
    this.remove(l);
    return true;
  }
  private remove(l: Link & { peer?: { ns: string; index: number } }) {
    this.n.links.delete(l.name);
    this.n.addrs = this.n.addrs.filter((a) => a.index !== l.index);
    if (l.peer) {
      const pn = this.w.ns(l.peer.ns);
      const p = [...pn.links.values()].find((x) => x.index === l.peer!.index);
      if (p) {
        pn.links.delete(p.name);
        pn.addrs = pn.addrs.filter((a) => a.index !== p.index);
        pn.routes = pn.routes.filter((r) => r.dev !== p.index);
      }
    }
  }
  delLinkGroup(group: number): void {
    this.w.step("delLinkGroup");
    for (const l of [...this.n.links.values()]) if (l.group === group) this.remove(l);
  }
  addrs(index?: number) {
    return this.n.addrs.filter((a) => index === undefined || a.index === index);
  }
  addAddr(index: number, cidr: string): void {
    this.w.step("addAddr");
    this.byIndex(index);
    this.n.addrs.push({ index, cidr });
  }
  delAddr(index: number, cidr: string): boolean {
    const before = this.n.addrs.length;
    this.n.addrs = this.n.addrs.filter((a) => !(a.index === index && a.cidr === cidr));
    return this.n.addrs.length < before;
  }
  routes(): Route[] {
    return [...this.n.routes];
  }
  addRoute(r: { dst: string; gw?: string; dev: number }): void {
    this.w.step("addRoute");
    if (this.n.routes.some((x) => x.dst === r.dst)) throw Object.assign(new Error("File exists"), { errno: 17 });
    this.n.routes.push({ dst: r.dst, gw: r.gw, dev: r.dev, table: 254, protocol: 3, scope: 0 });
  }
  delRoute(r: { dst: string }): boolean {
    const before = this.n.routes.length;
    this.n.routes = this.n.routes.filter((x) => x.dst !== r.dst);
    return this.n.routes.length < before;
  }
  neighbours(): Neighbour[] {
    return [];
  }
  setNeighbour(): void {}
  delNeighbour(): boolean {
    return false;
  }
  fdb(): FdbEntry[] {
    return [];
  }
  addFdb(): void {}
  addPortFdb(): void {}
  delPortFdb(): boolean {
    return false;
  }
  delFdb(): boolean {
    return false;
  }
  sysctl(): string {
    return "0";
  }
  setSysctl(): void {}
  close(): void {}
}

/** An allocation store that keeps entries in memory. */
export function memoryStore() {
  const rows = new Map<string, import("../../net/ipam/allocator.ts").Entry>();
  const meta = new Map<string, string>();
  return {
    rows,
    load: () => [...rows.values()],
    put: (e: import("../../net/ipam/allocator.ts").Entry) => void rows.set(`${e.containerId}/${e.ifname}`, e),
    remove: (e: import("../../net/ipam/allocator.ts").Entry) => void rows.delete(`${e.containerId}/${e.ifname}`),
    getMeta: (k: string) => meta.get(k),
    setMeta: (k: string, v: string) => void meta.set(k, v),
  };
}
