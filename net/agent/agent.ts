/**
 * The agent of one node: owns the allocator, keeps the bridge, runs the mesh router and
 * keeps the VXLAN datapath and masquerading in line with what the mesh knows. Side
 * effects go through what it is given (host layer, store, transport, clock, nft); the
 * HTTP server is in api.ts and the process wiring in commands/agent.ts.
 */
import type { NetHost } from "../host/host.ts";
import type { NetnsCheck } from "../host/netns.ts";
import { Allocator, RangeFullError, type AllocStore, type Span } from "../ipam/allocator.ts";
import { emptyState, heirOf, pendingRemovals, step as ringStep, spanSize, type Init, type IpamState, type PeerView } from "../ipam/ring.ts";
import { formatCidr, ipToNum, macForIp, withPrefix, contains, type Cidr } from "../cidr.ts";
import { WeaveError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { Router, type RouterOptions } from "../mesh/router.ts";
import { nameFromSeed, randomUid } from "../mesh/peer-name.ts";
import { splitHostPort, type Scheduler, type Transport } from "../mesh/transport.ts";
import { reconcileVxlan, VXLAN_NAME } from "../encap/vxlan.ts";
import type { MasqSpec } from "../host/nft.ts";
import { reconcileBridge, type BridgeSpec } from "./bridge.ts";
import { overlayMtu } from "./mtu.ts";
import { pickAdvertiseAddress } from "./addresses.ts";
import { CniExecutor, PENDING_DELETE_DELAY_MS } from "./cni-exec.ts";

export interface AgentStore extends AllocStore {
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
}

export type AgentConfig = {
  range: Cidr;
  /** Overlay MTU; undefined = detect from the underlay. */
  mtu?: number;
  bridge: string;
  nickname: string;
  dataDir: string;
  /** Peers to connect to ("ip" or "ip:port"), from --peers / KUBE_PEERS. */
  peers?: string[];
  /** Mesh listen address, "ip:port" (default 0.0.0.0:6783). */
  meshListen?: string;
  /** Address peers reach us at; default: detected from the node's interfaces. */
  advertise?: string;
  connLimit?: number;
  discovery?: boolean;
  /** How the ring starts (IPALLOC_INIT); default: consensus of this peer and `peers`. */
  ipallocInit?: Init;
  /** Peers also come from the Kubernetes Node list (setPeers); wait for it before seeding. */
  kube?: boolean;
  noMasqLocal?: boolean;
  /** Extra router settings (tests shorten timers). */
  mesh?: Partial<RouterOptions>;
};

export type AgentDeps = {
  host: NetHost;
  openHost(netns: string): NetHost;
  checkNetns(path: string): NetnsCheck;
  store: AgentStore;
  log(msg: string): void;
  defer?(fn: () => void): void;
  /** The mesh's network and clock; without them the agent runs alone (no mesh). */
  transport?: Transport;
  sched?: Scheduler;
  masq?: { apply(s: MasqSpec): void; inPlace(s: MasqSpec): boolean; remove(): void };
  /** A seed for the peer name, e.g. /etc/machine-id (combined with the data dir). */
  machineId?: string;
  /** In a cluster: win the right to take over a removed peer's space (ConfigMap CAS). */
  reclaimLock?: (dead: string, heir: string) => Promise<boolean>;
};

/** The id under which the bridge's own address is held (Weave's "expose"). */
export const EXPOSE_ID = "weave:expose";

const ours = (bridge: string) => (l: { name: string }) => l.name === bridge || l.name.startsWith("vethwepl") || l.name === VXLAN_NAME;

export class Agent {
  ready = false;
  reason = "starting";
  allocator!: Allocator;
  bridge?: BridgeSpec;
  mtuSource = "";
  router?: Router;
  name = "";
  advertise = "";
  datapathErrors: string[] = [];
  ipam: IpamState = emptyState();
  /** Why the ring cannot hand out space yet, or "" when it can. */
  ipamWaiting = "";
  ipamConflicts: string[] = [];
  readonly cni: CniExecutor;
  private host: NetHost;
  private store: AgentStore;
  private log: (msg: string) => void;
  private datapathPending = false;
  private masqSpec?: MasqSpec;

  constructor(readonly cfg: AgentConfig, private deps: AgentDeps) {
    this.host = deps.host;
    this.store = deps.store;
    this.log = deps.log;
    this.cni = new CniExecutor({
      host: deps.host,
      openHost: deps.openHost,
      checkNetns: deps.checkNetns,
      allocator: () => (this.ready ? this.allocator : undefined),
      log: deps.log,
      defer: deps.defer ?? ((fn) => setTimeout(fn, PENDING_DELETE_DELAY_MS)),
      changed: () => this.podsChanged(),
    });
  }

  /** Load state, set up the bridge, start the mesh; throws WeaveError on a setting that cannot work. */
  start(): void {
    const range = formatCidr(this.cfg.range);
    const stored = this.store.getMeta("range");
    if (stored && stored !== range && this.store.load().length > 0) {
      throw new WeaveError(
        "E_RANGE_CHANGED",
        `the data dir ${this.cfg.dataDir} holds allocations from range ${stored}, but the agent was started with ${range}; ` +
          `start it with --ipalloc-range ${stored}, or delete the data dir's weave.db to forget those allocations`,
      );
    }
    this.store.setMeta("range", range);
    const saved = this.store.getMeta("ipam");
    this.ipam = saved ? (JSON.parse(saved) as IpamState) : emptyState();
    this.allocator = new Allocator(this.cfg.range, this.store, this.ipam.owned);
    // Allocations change how much we have free (gossiped for donors) and may leave us
    // out of space; a short delay folds a burst of them into one step.
    this.allocator.onChange(() => this.scheduleIpam(50));
    this.name = this.store.getMeta("peer-name") ?? nameFromSeed(new Bun.CryptoHasher("sha256").update(`${this.deps.machineId ?? randomUid()}\n${this.cfg.dataDir}`).digest("hex"));
    this.store.setMeta("peer-name", this.name);

    const links = this.host.links();
    const routes = this.host.routes();
    let mtu = this.cfg.mtu;
    if (mtu === undefined) {
      const d = overlayMtu(links, routes, ours(this.cfg.bridge));
      mtu = d.mtu;
      this.mtuSource = d.from;
    } else this.mtuSource = "set by --mtu / WEAVE_MTU";

    this.mtu = mtu;
    this.masqSpec = { range, bridge: this.cfg.bridge, noMasqLocal: this.cfg.noMasqLocal ?? true };
    this.cni.flushLeftovers();

    if (this.deps.transport && this.deps.sched) {
      const listen = this.cfg.meshListen ?? "0.0.0.0:6783";
      const ip = this.cfg.advertise ?? pickAdvertiseAddress(links, this.host.addrs(), routes, ours(this.cfg.bridge));
      if (!ip) throw new WeaveError("E_NO_ADDRESS", "cannot tell which address peers should reach this node at; give --advertise-address");
      this.advertise = ip;
      this.router = new Router({
        name: this.name,
        nickname: this.cfg.nickname,
        listen,
        advertise: `${ip}:${splitHostPort(listen)[1]}`,
        transport: this.deps.transport,
        sched: this.deps.sched,
        log: (m) => this.log(`mesh: ${m}`),
        connLimit: this.cfg.connLimit,
        discovery: this.cfg.discovery,
        keep: (e) => {
          const s = (e.app as { ipam?: IpamState } | undefined)?.ipam;
          return !!s && (s.owned.length > 0 || s.gifts.length > 0);
        },
        ...this.cfg.mesh,
      });
      this.router.onChange(() => {
        this.scheduleDatapath();
        this.scheduleIpam();
      });
      this.router.start();
      this.podsChanged();
      this.router.addTargets(this.cfg.peers ?? []);
    }
    this.ipamStep();
    this.log(`peer ${this.name} (${this.cfg.nickname})${this.advertise ? ` at ${this.advertise}` : ""}, range ${range}, MTU ${mtu} (${this.mtuSource}), ${this.cfg.peers?.length ?? 0} peer(s) to dial`);
  }

  private mtu = 0;
  private ipamPending = false;
  private spaceWaiters: (() => void)[] = [];

  private scheduleIpam(delayMs = 0): void {
    if (this.ipamPending) return;
    this.ipamPending = true;
    this.later(delayMs, () => {
      this.ipamPending = false;
      if (this.allocator) this.ipamStep();
    });
  }

  /** Timers go through the mesh's clock when there is one (tests run it virtually). */
  private later(ms: number, fn: () => void): void {
    if (this.deps.sched) this.deps.sched.after(ms, fn);
    else setTimeout(fn, ms);
  }

  /** The ring as we see it: every peer's gossiped IPAM state. */
  private ipamViews(): PeerView[] {
    const t = this.router?.topology;
    if (!t) return [];
    const reach = t.reachable();
    return t.entries().filter((e) => e.name !== this.name).map((e) => ({ name: e.name, reachable: reach.has(e.name), addresses: e.addresses, state: (e.app as { ipam?: IpamState } | undefined)?.ipam }));
  }

  /** Peers from the Kubernetes Node list, once it has been read. */
  private kubePeers?: string[];

  /** Addresses of Nodes deleted from the cluster: their peers are gone for good. */
  private deletedNodes = new Set<string>();
  /** Removals the ConfigMap claim allowed us (dead peer names), and claims under way. */
  private approved = new Set<string>();
  private claiming = new Set<string>();

  /** The Node list changed: dial new nodes, stop dialling deleted ones. */
  setPeers(addrs: string[]): void {
    const before = new Set(this.kubePeers ?? []);
    const now = new Set(addrs);
    for (const a of before) if (!now.has(a)) this.deletedNodes.add(a);
    for (const a of now) this.deletedNodes.delete(a);
    this.router?.removeTargets([...before].filter((a) => !now.has(a) && !(this.cfg.peers ?? []).includes(a)));
    this.router?.addTargets(addrs.filter((a) => !before.has(a)));
    if (this.kubePeers === undefined) this.log(`kubernetes: ${addrs.length} other node(s): ${addrs.join(", ") || "none"}`);
    this.kubePeers = addrs;
    this.scheduleIpam();
  }

  private withMeshPort(p: string): string {
    return p.includes(":") ? p : `${p}:${splitHostPort(this.cfg.meshListen ?? "0.0.0.0:6783")[1]}`;
  }

  /** How the ring starts; undefined while the Node list that decides it is not read yet. */
  private init(): Init | undefined {
    if (this.cfg.ipallocInit) return this.cfg.ipallocInit;
    const peers = this.cfg.peers?.length ? this.cfg.peers : this.cfg.kube ? this.kubePeers : [];
    return peers && { kind: "consensus", peers: peers.map((p) => this.withMeshPort(p)) };
  }

  private rangeSpan(): Span {
    return [this.cfg.range.base, this.cfg.range.base + 2 ** (32 - this.cfg.range.prefix)];
  }

  /** One step of the ring: take gifts, ask for or give space; persist before gossiping. */
  ipamStep(): void {
    const init = this.init();
    if (!init) {
      this.ipamWaiting = "waiting for the Kubernetes Node list to know the peers";
      return;
    }
    const views = this.ipamViews();
    this.requestRemovalOfDeletedNodes(views);
    this.claimRemovals(views);
    const r = ringStep(this.name, this.ipam, this.allocator.free, views, init, this.rangeSpan(), (owned) => this.allocator.spanToGive(owned), (dead) => !this.deps.reclaimLock || this.approved.has(dead));
    for (const n of r.notes) this.log(`ipam: ${n}`);
    if (r.conflicts.join() !== this.ipamConflicts.join()) for (const c of r.conflicts) this.log(`ipam: ${c}`);
    this.ipamConflicts = r.conflicts;
    if (r.waiting && r.waiting !== this.ipamWaiting) this.log(`ipam: ${r.waiting}`);
    this.ipamWaiting = r.waiting ?? "";
    if (r.changed) this.setIpam(r.state);
    else this.router?.setLocal({ app: { ipam: this.ipam } });
    if (!this.bridge && this.allocator.free > 0) this.setUpBridge();
    if (this.allocator.free > 0) for (const w of this.spaceWaiters.splice(0)) w();
  }

  /** A peer whose Node was deleted, and that is unreachable, is removed automatically. */
  private requestRemovalOfDeletedNodes(views: PeerView[]): void {
    if (!this.deletedNodes.size) return;
    const gone = views.filter((v) => !v.reachable && v.state?.owned.length && v.addresses.some((a) => this.deletedNodes.has(splitHostPort(a)[0])));
    const add = gone.map((v) => v.name).filter((n) => !this.ipam.removing?.includes(n) && !this.ipam.reclaimed.includes(n));
    if (!add.length) return;
    this.log(`ipam: Node of peer(s) ${add.join(", ")} deleted from the cluster: asking the ring to take over their space`);
    this.setIpam({ ...this.ipam, removing: [...(this.ipam.removing ?? []), ...add] });
  }

  /** Where we are the heir, win the cluster-wide claim before taking anything. */
  private claimRemovals(views: PeerView[]): void {
    const lock = this.deps.reclaimLock;
    if (!lock) return;
    for (const dead of pendingRemovals(this.name, this.ipam, views)) {
      if (this.approved.has(dead) || this.claiming.has(dead)) continue;
      this.claiming.add(dead);
      lock(dead, this.name).then(
        (won) => {
          this.claiming.delete(dead);
          if (won) this.approved.add(dead);
          else this.log(`ipam: another peer holds the claim on ${dead}'s space; leaving it to that peer`);
          this.scheduleIpam();
        },
        (e) => {
          this.claiming.delete(dead);
          this.log(`ipam: cannot claim ${dead}'s space in the weave-net ConfigMap yet (${(e as Error).message}); will retry`);
          this.later(5000, () => this.scheduleIpam());
        },
      );
    }
  }

  private setIpam(state: IpamState): void {
    this.store.setMeta("ipam", JSON.stringify(state));
    this.ipam = state;
    this.allocator.setOwned(state.owned);
    this.router?.setLocal({ app: { ipam: state } });
  }

  /**
   * rmpeer: ask the ring to take over the space of a peer that is gone for good. The
   * request is gossiped; the heir (heirOf in ring.ts), maybe us, does it exactly once.
   */
  rmpeer(nameOrNick: string): { name: string; heir: string; taken?: number } {
    const views = this.ipamViews();
    const dead = views.find((v) => v.name === nameOrNick || this.router?.topology.get(v.name)?.nickname === nameOrNick);
    if (!dead) throw new WeaveError("E_NO_PEER", `no peer named "${nameOrNick}" is known`);
    if (dead.reachable) throw new WeaveError("E_PEER_ALIVE", `peer ${dead.name} is reachable; only a peer that is gone for good can be removed`);
    const heir = heirOf(dead.name, this.name, views.filter((v) => v.state?.ring === this.ipam.ring));
    const before = spanSize(this.ipam.owned);
    if (!this.ipam.removing?.includes(dead.name) && !this.ipam.reclaimed.includes(dead.name)) this.setIpam({ ...this.ipam, removing: [...(this.ipam.removing ?? []), dead.name] });
    this.ipamStep();
    return { name: dead.name, heir, ...(heir === this.name ? { taken: spanSize(this.ipam.owned) - before } : {}) };
  }

  /** Resolves once this peer owns a free address, or after `ms`. */
  async waitForSpace(ms: number): Promise<boolean> {
    if (this.allocator.free > 0) return true;
    this.ipamStep();
    if (this.allocator.free > 0) return true;
    return new Promise((resolve) => {
      let settled = false;
      const done = (v: boolean) => {
        if (!settled) resolve(v);
        settled = true;
      };
      this.later(ms, () => done(this.allocator.free > 0));
      this.spaceWaiters.push(() => done(true));
    });
  }

  /** The bridge needs an address from our space, so it waits for the ring to give us some. */
  private setUpBridge(): void {
    let address: number;
    try {
      address = this.allocator.allocate(EXPOSE_ID, this.cfg.bridge).entry.address;
    } catch (e) {
      if (e instanceof RangeFullError) return;
      throw e;
    }
    this.bridge = { name: this.cfg.bridge, mtu: this.mtu, mac: macForIp(address), cidr: withPrefix(address, this.cfg.range) };
    this.reconcile();
    this.log(`ready: bridge ${this.bridge.name} ${this.bridge.cidr} mtu ${this.mtu}, ${spanSize(this.ipam.owned)} addresses owned, ${this.allocator.active - 1} pod addresses held`);
  }

  stop(): void {
    this.router?.stop();
    this.deps.masq?.remove();
  }

  /** One pass of keeping the node as it should be; logs whatever it had to change. */
  reconcile(): void {
    if (!this.bridge) {
      this.ready = false;
      this.reason = `waiting for address space: ${this.ipamWaiting || "asking peers for some"}`;
      this.ipamStep();
      return;
    }
    try {
      // Pods reach other nodes, the outside world and host ports through the node's
      // routing, as on any Kubernetes node.
      if (this.host.sysctl("net.ipv4.ip_forward") !== "1") {
        this.host.setSysctl("net.ipv4.ip_forward", "1");
        this.log("set net.ipv4.ip_forward=1");
      }
      const steps = reconcileBridge(this.host, this.bridge);
      if (steps.length) this.log(`bridge ${this.bridge.name}: ${steps.map((s) => s.op + ("cidr" in s ? ` ${s.cidr}` : "")).join(", ")}`);
      if (this.deps.masq && this.masqSpec && !this.deps.masq.inPlace(this.masqSpec)) {
        this.deps.masq.apply(this.masqSpec);
        this.log(`masquerading ${this.masqSpec.range} to outside the range (nftables table ip weave)`);
      }
      if (this.router) {
        this.datapath();
        this.ipamStep();
      }
      if (!this.ready && this.allocator) {
        this.ready = true;
        this.reason = "ready";
      }
    } catch (e) {
      this.ready = false;
      this.reason = `cannot set up the node: ${(e as Error).message}`;
      this.log(this.reason);
    }
  }

  /** Our pods (and the bridge address) go into our mesh entry. */
  podsChanged(): void {
    this.router?.setLocal({ pods: this.allocator.list().map((e) => e.address).sort((a, b) => a - b) });
  }

  private scheduleDatapath(): void {
    if (this.datapathPending) return;
    this.datapathPending = true;
    queueMicrotask(() => {
      this.datapathPending = false;
      this.datapath();
    });
  }

  /** The peers we can reach, with their underlay address and pods. */
  remotes(): { name: string; ip: string; pods: number[] }[] {
    if (!this.router) return [];
    const t = this.router.topology;
    return [...t.reachable()]
      .filter((n) => n !== this.name)
      .map((n) => t.get(n)!)
      .filter((e) => e.addresses.length > 0)
      .map((e) => ({ name: e.name, ip: splitHostPort(e.addresses[0]!)[0], pods: e.pods.filter((p) => contains(this.cfg.range, p)) }));
  }

  private datapath(): void {
    if (!this.bridge) return;
    try {
      const r = reconcileVxlan(this.host, { bridge: this.bridge.name, mtu: this.bridge.mtu, local: this.advertise, inRange: (ip) => contains(this.cfg.range, ipToNum(ip)) }, this.remotes());
      if (r.errors.length && r.errors.join() !== this.datapathErrors.join()) this.log(`datapath: ${r.errors.join("; ")}`);
      this.datapathErrors = r.errors;
    } catch (e) {
      this.datapathErrors = [(e as Error).message];
      this.log(`datapath: ${(e as Error).message}`);
    }
  }

  /** Pod attachments (everything but the bridge's own address). */
  podEntries() {
    return this.allocator.list().filter((e) => e.containerId !== EXPOSE_ID);
  }

  version(): string {
    return VERSION;
  }
}
