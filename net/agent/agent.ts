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
import { throughTunnel, tunnelAddress, WG_NAME } from "../encap/wireguard.ts";
import { EncryptedDatapath } from "./encrypted.ts";
import { reconcileVxlan } from "./datapath.ts";
import type { MasqSpec } from "../host/nft.ts";
import { reconcileBridge, type BridgeSpec } from "./bridge.ts";
import { overlayMtu, underlayMtu } from "./mtu.ts";
import { pickAdvertiseAddress } from "./addresses.ts";
import { CniExecutor, PENDING_DELETE_DELAY_MS } from "./cni-exec.ts";
import type { Admission } from "../host/npc-admission.ts";
import type { Occurrence } from "../events/aggregator.ts";
import { AgentStats } from "./stats.ts";
import { SLEEVE_TAP, SleevePath, type SleeveEngine } from "./sleeve-path.ts";
import type { PeerPath } from "./paths.ts";
import { ipamConflict, ipamExhausted, ipamWaiting, mtuMismatch, peerFailure, rangeOverlaps } from "./node-events.ts";

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
  /** While rotating: the next password's key (WEAVE_PASSWORD_NEXT, or a password file's second line). */
  meshPskNext?: Uint8Array;
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
  /** What an operator must see, as Events on the Node (net/agent/node-events.ts); in a cluster only. */
  events?(o: Occurrence): void;
  /** With a password: pod traffic between nodes through WireGuard (net/agent/encrypted.ts). */
  encryption?: EncryptedDatapath;
  /** The userspace path for peers the fast one does not reach (net/host/sleeve.ts); without it, none. */
  sleeve?: SleeveEngine;
};

/** The id under which the bridge's own address is held (Weave's "expose"). */
export const EXPOSE_ID = "weave:expose";

/** How long after a start the datapath keeps entries it has not relearned, when no peer is heard from. */
const PRUNE_GRACE_MS = 10_000;
/**
 * How long a peer that became unreachable keeps its datapath entries. An agent that
 * restarts (or is upgraded) leaves its node's kernel datapath running, so its pods stay
 * reachable meanwhile; a node that is really gone loses its entries after this.
 */
export const FADE_MS = 15_000;

type Remote = {
  name: string;
  ip: string;
  pods: number[];
  bridge?: number;
  path?: "fastdp" | "sleeve";
  publicKey?: string;
  passwords?: string[];
};

const ours = (bridge: string) => (l: { name: string }) =>
  l.name === bridge ||
  l.name.startsWith("vethwepl") ||
  l.name === VXLAN_NAME ||
  l.name === WG_NAME ||
  l.name === SLEEVE_TAP;

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
  /** Which peers go over the sleeve, and the sleeve kept in line (with a mesh and an engine). */
  sleeve?: SleevePath;
  name = "";
  advertise = "";
  datapathErrors: string[] = [];
  /** What /metrics reads (net/metrics/agent-metrics.ts). */
  readonly stats = new AgentStats();
  private ipamWaitSince?: number;
  private ipamWaitCounted?: number;
  private knownConflicts = new Set<string>();
  /** When the datapath was first kept, and whether it may delete yet (see VxlanSettings.prune). */
  private startedAt?: number;
  private heardFromMesh = false;
  /** Peers seen reachable at the last datapath pass, and those fading since (see FADE_MS). */
  private lastRemotes = new Map<string, Remote>();
  private fading = new Map<string, { remote: Remote; until: number }>();
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
    const enc = this.deps.encryption;
    if (enc) {
      const m = EncryptedDatapath.mtus(underlayMtu(links, routes, ours(this.cfg.bridge)) ?? mtu + 50, this.cfg.mtu);
      mtu = m.overlay;
      this.wgMtu = m.wireguard;
      if (this.cfg.mtu === undefined) this.mtuSource += ", less 60 for WireGuard";
    }

    this.mtu = mtu;
    const mismatch = mtuMismatch(this.cfg.mtu, underlayMtu(links, routes, ours(this.cfg.bridge)));
    const ourDevs = new Set(links.filter(ours(this.cfg.bridge)).map((l) => l.index));
    for (const o of [mismatch, ...rangeOverlaps(this.cfg.range, routes, (dev) => ourDevs.has(dev ?? -1))])
      if (o) {
        this.log(o.message);
        this.event(o);
      }
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
        ...(this.cfg.meshPskNext ? { pskNext: this.cfg.meshPskNext } : {}),
        ...this.cfg.mesh,
      });
      if (enc) {
        enc.prepare(ip);
        this.router.setLocal({ wgKey: enc.publicKey });
        enc.start(this.wgMtu).then(
          () => this.scheduleDatapath(),
          (e) =>
            this.log(`encryption: cannot start ${WG_NAME}: ${(e as Error).message}; no pod traffic leaves this node`),
        );
      }
      if (this.deps.sleeve) this.startSleeve(this.deps.sleeve, this.router, this.deps.sched);
      this.router.onConnectionFailure((f) => {
        const o = peerFailure(f);
        if (o) this.event(o);
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
  private wgMtu = 0;
  private bridgeAddress?: number;

  private startSleeve(engine: SleeveEngine, router: Router, sched: Scheduler): void {
    const every = (ms: number, fn: () => void) => {
      let cancel = sched.after(ms, function tick() {
        fn();
        cancel = sched.after(ms, tick);
      });
      return () => cancel();
    };
    this.sleeve = new SleevePath({
      engine,
      host: this.host,
      router,
      sealed: this.deps.encryption !== undefined,
      log: this.log,
      event: (o) => this.event(o),
      now: () => sched.now(),
      every,
      changed: () => this.scheduleDatapath(),
    });
    this.sleeve.start();
  }

  get encryption(): EncryptedDatapath | undefined {
    return this.deps.encryption;
  }

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
    this.bridgeAddress = address;
    this.podsChanged();
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
    void this.sleeve?.stop();
    this.router?.stop();
    this.deps.masq?.remove();
    this.deps.encryption?.stop();
  }

  /** One pass of keeping the node as it should be; logs whatever it had to change. */
  reconcile(): void {
    this.watchIpam();
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
      this.deps.encryption?.check();
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
      this.stats.reconcileError("node");
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
      const pods = this.allocator
        .list()
        .map((e) => e.address)
        .sort((a, b) => a - b);
      this.router?.setLocal({ pods, ...(this.bridgeAddress === undefined ? {} : { bridge: this.bridgeAddress }) });
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
  remotes(): Remote[] {
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
        ...(e.bridge === undefined ? {} : { bridge: e.bridge }),
        ...(e.wgKey === undefined ? {} : { publicKey: e.wgKey }),
        ...(e.passwords === undefined ? {} : { passwords: e.passwords }),
      }));
  }

  private datapath(): void {
    if (!this.bridge) return;
    const enc = this.deps.encryption;
    // Until weave-wg is up, VXLAN has nowhere to go but the underlay: program none.
    if (enc && !enc.ready) return;
    try {
      const now = this.deps.sched?.now() ?? Date.now();
      const known = this.datapathRemotes(now);
      const remotes = this.sleeve ? this.sleeve.pass(known) : known;
      this.startedAt ??= now;
      if (remotes.length || now - this.startedAt >= PRUNE_GRACE_MS) this.heardFromMesh = true;
      const r = reconcileVxlan(
        this.host,
        {
          bridge: this.bridge.name,
          mtu: this.bridge.mtu,
          local: enc ? tunnelAddress(this.advertise) : this.advertise,
          inRange: (ip) => contains(this.cfg.range, ipToNum(ip)),
          prune: this.heardFromMesh,
        },
        enc ? throughTunnel(remotes) : remotes,
      );
      if (enc) void enc.sync(remotes, this.heardFromMesh);
      const br = this.host.link(this.bridge.name);
      if (this.sleeve && br) r.errors.push(...this.sleeve.apply(br, this.bridge.mtu, this.advertise, remotes));
      if (r.errors.length && r.errors.join() !== this.datapathErrors.join())
        this.log(`datapath: ${r.errors.join("; ")}`);
      this.datapathErrors = r.errors;
      this.stats.datapathChanges += r.changes;
      if (r.errors.length) this.stats.reconcileError("datapath");
      const pods = remotes.reduce((n, x) => n + x.pods.length, 0);
      this.stats.datapathEntries = { fdb: remotes.length + pods, neighbour: pods };
    } catch (e) {
      this.datapathErrors = [(e as Error).message];
      this.stats.reconcileError("datapath");
      this.log(`datapath: ${(e as Error).message}`);
    }
  }

  private event(o: Occurrence): void {
    this.deps.events?.(o);
  }

  /** An allocation gave up waiting for space (the API's /cni and /ip). */
  noSpace(what: string, waitedMs: number): void {
    this.event(ipamExhausted(what, waitedMs, this.cfg.range));
  }

  /** Counts a ring that keeps waiting, and new conflicts, as Events. */
  private watchIpam(): void {
    if (!this.ipamKeeper) return;
    const now = this.deps.sched?.now() ?? Date.now();
    const waiting = this.ipamWaiting || (this.bridge ? "" : "waiting for address space from peers");
    if (!waiting) this.ipamWaitSince = this.ipamWaitCounted = undefined;
    else this.ipamWaitSince ??= now;
    const o = ipamWaiting(waiting, this.ipamWaitSince, this.ipamWaitCounted, now);
    if (o) {
      this.ipamWaitCounted = now;
      this.event(o);
    }
    for (const c of this.ipamConflicts) if (!this.knownConflicts.has(c)) this.event(ipamConflict(c));
    this.knownConflicts = new Set(this.ipamConflicts);
  }

  /** The reachable peers, and those that became unreachable less than FADE_MS ago (minus pods a live peer has now). */
  private datapathRemotes(now: number): Remote[] {
    const live = this.remotes();
    const liveNames = new Set(live.map((r) => r.name));
    for (const [name, remote] of this.lastRemotes)
      if (!liveNames.has(name) && !this.fading.has(name)) this.fading.set(name, { remote, until: now + FADE_MS });
    for (const [name, f] of this.fading) if (liveNames.has(name) || f.until <= now) this.fading.delete(name);
    this.lastRemotes = new Map(live.map((r) => [r.name, r]));
    const livePods = new Set(live.flatMap((r) => r.pods));
    const faded = [...this.fading.values()].map(({ remote }) => ({
      ...remote,
      pods: remote.pods.filter((p) => !livePods.has(p)),
    }));
    return [...live, ...faded];
  }

  /**
   * The path of pod traffic to peer `name`: the fast one (kernel VXLAN) unless the sleeve
   * carries it, directly or through the neighbour `via` (net/agent/paths.ts).
   */
  dataPath(name: string): PeerPath | { path: "fastdp"; reason: "" } {
    return this.sleeve?.pathOf(name) ?? { path: "fastdp", reason: "" };
  }

  /** Pod attachments (everything but the bridge's own address). */
  podEntries() {
    return this.allocator.list().filter((e) => e.containerId !== EXPOSE_ID);
  }
}
