/**
 * The agent of one node: owns the allocator, keeps the bridge, runs the mesh router and
 * keeps the VXLAN datapath and masquerading in line with what the mesh knows. Side
 * effects go through what it is given (host layer, store, transport, clock, nft); the
 * HTTP server is in api.ts and the process wiring in commands/agent.ts.
 */
import type { NetHost } from "../host/host.ts";
import type { NetnsCheck } from "../host/netns.ts";
import { Allocator, RangeFullError, type AllocStore } from "../ipam/allocator.ts";
import { spanSize, type Init, type IpamState } from "../ipam/ring.ts";
import { IpamKeeper } from "./ipam-keeper.ts";
import { formatCidr, ipToNum, macForIp, withPrefix, contains, type Cidr } from "../cidr.ts";
import { WeaveError } from "../errors.ts";
import { Router, type RouterOptions } from "../mesh/router.ts";
import { nameFromSeed, randomUid } from "../mesh/peer-name.ts";
import { splitHostPort, type Scheduler, type Transport } from "../mesh/transport.ts";
import { VXLAN_NAME } from "../encap/vxlan.ts";
import { reconcileVxlan } from "./datapath.ts";
import type { MasqSpec } from "../host/nft.ts";
import { reconcileBridge, type BridgeSpec } from "./bridge.ts";
import { overlayMtu } from "./mtu.ts";
import { pickAdvertiseAddress } from "./addresses.ts";
import { CniExecutor, PENDING_DELETE_DELAY_MS } from "./cni-exec.ts";
import type { Admission } from "../host/npc-admission.ts";

export interface AgentStore extends AllocStore {
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
}

export type AgentConfig = {
  range: Cidr;
  /** The root-only unix socket of what changes state (reported for tools to find). */
  socket?: string;
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
  /** The mesh's pre-shared key, from WEAVE_PASSWORD: every mesh connection encrypted, or refused. */
  meshPsk?: Uint8Array;
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
  /** weave npc's pending entries for new pods, written on CNI ADD (net/host/npc-admission.ts). */
  admission?: Admission;
};

/** The id under which the bridge's own address is held (Weave's "expose"). */
export const EXPOSE_ID = "weave:expose";

const ours = (bridge: string) => (l: { name: string }) =>
  l.name === bridge || l.name.startsWith("vethwepl") || l.name === VXLAN_NAME;

export class Agent {
  ready = false;
  private failure = "";

  /** Why the agent is not ready (or "ready"). */
  get reason(): string {
    if (this.ready) return "ready";
    if (this.failure) return this.failure;
    if (this.allocator && !this.bridge)
      return `waiting for address space: ${this.ipamWaiting || "asking peers for some"}`;
    return "starting";
  }
  allocator!: Allocator;
  bridge?: BridgeSpec;
  mtuSource = "";
  router?: Router;
  name = "";
  advertise = "";
  datapathErrors: string[] = [];
  ipamKeeper!: IpamKeeper;
  readonly cni: CniExecutor;
  private host: NetHost;
  private store: AgentStore;
  private log: (msg: string) => void;
  private datapathPending = false;
  private masqSpec?: MasqSpec;

  constructor(
    readonly cfg: AgentConfig,
    private deps: AgentDeps,
  ) {
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
      admission: deps.admission,
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
    this.name =
      this.store.getMeta("peer-name") ??
      nameFromSeed(
        new Bun.CryptoHasher("sha256")
          .update(`${this.deps.machineId ?? randomUid()}\n${this.cfg.dataDir}`)
          .digest("hex"),
      );
    this.store.setMeta("peer-name", this.name);
    this.allocator = new Allocator(this.cfg.range, this.store, []);
    this.ipamKeeper = new IpamKeeper({
      name: this.name,
      range: this.cfg.range,
      peers: this.cfg.peers ?? [],
      kube: this.cfg.kube ?? false,
      init: this.cfg.ipallocInit,
      meshPort: splitHostPort(this.cfg.meshListen ?? "0.0.0.0:6783")[1],
      store: this.store,
      allocator: this.allocator,
      router: () => this.router,
      log: this.log,
      later: (ms, fn) => this.later(ms, fn),
      reclaimLock: this.deps.reclaimLock,
      onSpace: () => {
        if (!this.bridge) this.setUpBridge();
      },
    });
    // Allocations change how much we have free (gossiped for donors) and may leave us
    // out of space; a short delay folds a burst of them into one step.
    // Every allocation and release, whoever made it (the plugin, the /ip API), changes the
    // pods we gossip.
    this.allocator.onChange(() => {
      this.ipamKeeper.schedule(50);
      this.podsChanged();
    });

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
      if (!ip)
        throw new WeaveError(
          "E_NO_ADDRESS",
          "cannot tell which address peers should reach this node at; give --advertise-address",
        );
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
        keep: IpamKeeper.keep,
        psk: this.cfg.meshPsk,
        ...this.cfg.mesh,
      });
      this.router.onChange(() => {
        this.scheduleDatapath();
        this.ipamKeeper.schedule();
      });
      this.router.start();
      this.podsChanged();
      this.router.addTargets(this.cfg.peers ?? []);
    }
    this.ipamKeeper.step();
    const at = this.advertise ? ` at ${this.advertise}` : "";
    const toDial = this.cfg.peers?.length ?? 0;
    this.log(
      `peer ${this.name} (${this.cfg.nickname})${at}, range ${range}, ` +
        `MTU ${mtu} (${this.mtuSource}), ${toDial} peer(s) to dial`,
    );
  }

  private mtu = 0;

  /** Timers go through the mesh's clock when there is one (tests run it virtually). */
  private later(ms: number, fn: () => void): void {
    if (this.deps.sched) this.deps.sched.after(ms, fn);
    else setTimeout(fn, ms);
  }

  get ipam(): IpamState {
    return this.ipamKeeper.state;
  }
  get ipamWaiting(): string {
    return this.ipamKeeper.waiting;
  }
  get ipamConflicts(): string[] {
    return this.ipamKeeper.conflicts;
  }

  /** The Node list changed (in a cluster). */
  setPeers(addrs: string[]): void {
    this.ipamKeeper.setPeers(addrs);
  }

  rmpeer(nameOrNick: string) {
    return this.ipamKeeper.rmpeer(nameOrNick);
  }

  waitForSpace(ms: number): Promise<boolean> {
    return this.ipamKeeper.waitForSpace(ms);
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
    this.bridge = {
      name: this.cfg.bridge,
      mtu: this.mtu,
      mac: macForIp(address),
      cidr: withPrefix(address, this.cfg.range),
    };
    this.reconcile();
    const owned = spanSize(this.ipam.owned);
    const held = this.allocator.active - 1;
    this.log(
      `ready: bridge ${this.bridge.name} ${this.bridge.cidr} mtu ${this.mtu}, ` +
        `${owned} addresses owned, ${held} pod addresses held`,
    );
  }

  /** Finish what is deferred (retired host veths are deleted now), before a stop. */
  finishPending(): void {
    this.cni.flush();
  }

  stop(): void {
    this.router?.stop();
    this.deps.masq?.remove();
  }

  /** One pass of keeping the node as it should be; logs whatever it had to change. */
  reconcile(): void {
    if (!this.bridge) {
      this.ready = false;
      this.ipamKeeper.step();
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
      if (steps.length)
        this.log(
          `bridge ${this.bridge.name}: ${steps.map((s) => s.op + ("cidr" in s ? ` ${s.cidr}` : "")).join(", ")}`,
        );
      if (this.deps.masq && this.masqSpec && !this.deps.masq.inPlace(this.masqSpec)) {
        this.deps.masq.apply(this.masqSpec);
        this.log(`masquerading ${this.masqSpec.range} to outside the range (nftables table ip weave)`);
      }
      if (this.router) {
        this.datapath();
        this.ipamKeeper.step();
      }
      if (!this.ready && this.allocator) {
        this.ready = true;
        this.failure = "";
      }
    } catch (e) {
      this.ready = false;
      this.failure = `cannot set up the node: ${(e as Error).message}`;
      this.log(this.failure);
    }
  }

  private podsPending = false;

  /**
   * Our pods (and the bridge address) go into our mesh entry. Folded over a short delay,
   * so a burst of allocations costs one list, not one per allocation.
   */
  podsChanged(): void {
    if (!this.router || this.podsPending) return;
    this.podsPending = true;
    this.later(20, () => {
      this.podsPending = false;
      this.router?.setLocal({
        pods: this.allocator
          .list()
          .map((e) => e.address)
          .sort((a, b) => a - b),
      });
    });
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
      .map((e) => ({
        name: e.name,
        ip: splitHostPort(e.addresses[0]!)[0],
        pods: e.pods.filter((p) => contains(this.cfg.range, p)),
      }));
  }

  private datapath(): void {
    if (!this.bridge) return;
    try {
      const r = reconcileVxlan(
        this.host,
        {
          bridge: this.bridge.name,
          mtu: this.bridge.mtu,
          local: this.advertise,
          inRange: (ip) => contains(this.cfg.range, ipToNum(ip)),
        },
        this.remotes(),
      );
      if (r.errors.length && r.errors.join() !== this.datapathErrors.join())
        this.log(`datapath: ${r.errors.join("; ")}`);
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
}
