/**
 * The agent's side of the IPAM ring (net/ipam/ring.ts decides; this file acts): it
 * reads what peers gossip, runs a step whenever something changed, persists our state
 * before it is gossiped, tells the allocator what we own, turns deleted Nodes into
 * removal requests, wins the ConfigMap claim before taking a removed peer's space, and
 * lets allocations wait (bounded) for space.
 */
import type { Allocator, Span } from "../ipam/allocator.ts";
import {
  emptyState,
  heirOf,
  pendingRemovals,
  step as ringStep,
  spanSize,
  type Init,
  type IpamState,
  type PeerView,
} from "../ipam/ring.ts";
import type { PeerEntry } from "../mesh/topology.ts";
import type { Router } from "../mesh/router.ts";
import { splitHostPort } from "../mesh/transport.ts";
import type { Cidr } from "../cidr.ts";
import { WeaveError } from "../errors.ts";

export type IpamKeeperDeps = {
  name: string;
  range: Cidr;
  /** Peers given up front ("ip" or "ip:port"); with `kube`, the Node list's when these are empty. */
  peers: string[];
  kube: boolean;
  init?: Init;
  meshPort: number;
  store: { getMeta(k: string): string | undefined; setMeta(k: string, v: string): void };
  allocator: Allocator;
  router: () => Router | undefined;
  log(msg: string): void;
  later(ms: number, fn: () => void): void;
  reclaimLock?: (dead: string, heir: string) => Promise<boolean>;
  /** Called after every step in which we own free space. */
  onSpace(): void;
};

const ipamOf = (e: PeerEntry) => (e.app as { ipam?: IpamState } | undefined)?.ipam;

/**
 * Someone is waiting on it: asking for space, giving or taking it, seeding, removals.
 * A change of the free count alone (every allocation) is not urgent.
 */
function urgent(a: IpamState, b: IpamState): boolean {
  return JSON.stringify({ ...a, free: 0 }) !== JSON.stringify({ ...b, free: 0 });
}

export class IpamKeeper {
  state: IpamState;
  /** Why the ring cannot hand out space yet, or "" when it can. */
  waiting = "";
  conflicts: string[] = [];
  private pending = false;
  private spaceWaiters: (() => void)[] = [];
  /** Peers from the Kubernetes Node list, once it has been read. */
  private kubePeers?: string[];
  /** Addresses of Nodes deleted from the cluster: their peers are gone for good. */
  private deletedNodes = new Set<string>();
  /** Removals the ConfigMap claim allowed us, and claims under way. */
  private approved = new Set<string>();
  private claiming = new Set<string>();

  constructor(private d: IpamKeeperDeps) {
    const saved = d.store.getMeta("ipam");
    this.state = saved ? (JSON.parse(saved) as IpamState) : emptyState();
    d.allocator.setOwned(this.state.owned);
  }

  /** Allocations waiting for space from peers right now (weave_ipam_pending_allocates). */
  get pendingAllocates(): number {
    return this.spaceWaiters.length;
  }

  /** Removed peers whose space waits to be taken over by their heir (weave_ipam_pending_claims). */
  get pendingClaims(): number {
    return this.state.removing?.length ?? 0;
  }

  /** Peers that own address space and that we cannot reach (weave_ipam_unreachable_count). */
  unreachableOwners(): number {
    return this.views().filter((v) => !v.reachable && (v.state?.owned.length ?? 0) > 0).length;
  }

  /** The mesh forgets unreachable peers, but never one that still owns space. */
  static keep(e: PeerEntry): boolean {
    const s = ipamOf(e);
    return !!s && (s.owned.length > 0 || s.gifts.length > 0);
  }

  schedule(delayMs = 0): void {
    if (this.pending) return;
    this.pending = true;
    this.d.later(delayMs, () => {
      this.pending = false;
      this.step();
    });
  }

  /** The ring as we see it: every peer's gossiped IPAM state. */
  views(): PeerView[] {
    const t = this.d.router()?.topology;
    if (!t) return [];
    const reach = t.reachable();
    return t
      .entries()
      .filter((e) => e.name !== this.d.name)
      .map((e) => ({ name: e.name, reachable: reach.has(e.name), addresses: e.addresses, state: ipamOf(e) }));
  }

  /** How the ring starts; undefined while the Node list that decides it is not read yet. */
  private init(): Init | undefined {
    if (this.d.init) return this.d.init;
    const peers = this.d.peers.length ? this.d.peers : this.d.kube ? this.kubePeers : [];
    return peers && { kind: "consensus", peers: peers.map((p) => (p.includes(":") ? p : `${p}:${this.d.meshPort}`)) };
  }

  /** One step of the ring: take gifts, ask for or give space; persist before gossiping. */
  step(): void {
    const init = this.init();
    if (!init) {
      this.waiting = "waiting for the Kubernetes Node list to know the peers";
      return;
    }
    const views = this.views();
    this.requestRemovalOfDeletedNodes(views);
    this.claimRemovals(views);
    const range: Span = [this.d.range.base, this.d.range.base + 2 ** (32 - this.d.range.prefix)];
    const alloc = this.d.allocator;
    const r = ringStep(
      this.d.name,
      this.state,
      alloc.free,
      views,
      init,
      range,
      (owned) => alloc.spanToGive(owned),
      (dead) => !this.d.reclaimLock || this.approved.has(dead),
    );
    for (const n of r.notes) this.d.log(`ipam: ${n}`);
    if (r.conflicts.join() !== this.conflicts.join()) for (const c of r.conflicts) this.d.log(`ipam: ${c}`);
    this.conflicts = r.conflicts;
    if (r.waiting && r.waiting !== this.waiting) this.d.log(`ipam: ${r.waiting}`);
    this.waiting = r.waiting ?? "";
    if (r.changed) this.set(r.state, urgent(this.state, r.state));
    else this.d.router()?.setLocal({ app: { ipam: this.state } });
    if (alloc.free > 0) {
      this.d.onSpace();
      for (const w of this.spaceWaiters.splice(0)) w();
    }
  }

  private set(state: IpamState, urgent = true): void {
    this.d.store.setMeta("ipam", JSON.stringify(state));
    this.state = state;
    this.d.allocator.setOwned(state.owned);
    this.d.router()?.setLocal({ app: { ipam: state } }, urgent);
  }

  /** The Node list changed: dial new nodes, stop dialling deleted ones, remember deletions. */
  setPeers(addrs: string[]): void {
    const before = new Set(this.kubePeers ?? []);
    const now = new Set(addrs);
    for (const a of before) if (!now.has(a)) this.deletedNodes.add(a);
    for (const a of now) this.deletedNodes.delete(a);
    const router = this.d.router();
    router?.removeTargets([...before].filter((a) => !now.has(a) && !this.d.peers.includes(a)));
    router?.addTargets(addrs.filter((a) => !before.has(a)));
    if (this.kubePeers === undefined)
      this.d.log(`kubernetes: ${addrs.length} other node(s): ${addrs.join(", ") || "none"}`);
    this.kubePeers = addrs;
    this.schedule();
  }

  /** A peer whose Node was deleted, and that is unreachable, is removed automatically. */
  private requestRemovalOfDeletedNodes(views: PeerView[]): void {
    if (!this.deletedNodes.size) return;
    const gone = views.filter(
      (v) =>
        !v.reachable && v.state?.owned.length && v.addresses.some((a) => this.deletedNodes.has(splitHostPort(a)[0])),
    );
    const add = gone
      .map((v) => v.name)
      .filter((n) => !this.state.removing?.includes(n) && !this.state.reclaimed.includes(n));
    if (!add.length) return;
    this.d.log(
      `ipam: Node of peer(s) ${add.join(", ")} deleted from the cluster: asking the ring to take over their space`,
    );
    this.set({ ...this.state, removing: [...(this.state.removing ?? []), ...add] });
  }

  /** Where we are the heir, win the cluster-wide claim before taking anything. */
  private claimRemovals(views: PeerView[]): void {
    const lock = this.d.reclaimLock;
    if (!lock) return;
    for (const dead of pendingRemovals(this.d.name, this.state, views)) {
      if (this.approved.has(dead) || this.claiming.has(dead)) continue;
      this.claiming.add(dead);
      lock(dead, this.d.name).then(
        (won) => {
          this.claiming.delete(dead);
          if (won) this.approved.add(dead);
          else this.d.log(`ipam: another peer holds the claim on ${dead}'s space; leaving it to that peer`);
          this.schedule();
        },
        (e) => {
          this.claiming.delete(dead);
          this.d.log(
            `ipam: cannot claim ${dead}'s space in the weave-net ConfigMap yet (${(e as Error).message}); will retry`,
          );
          this.d.later(5000, () => this.schedule());
        },
      );
    }
  }

  /**
   * rmpeer: ask the ring to take over the space of a peer that is gone for good. The
   * request is gossiped; the heir (heirOf in ring.ts), maybe us, does it exactly once.
   */
  rmpeer(nameOrNick: string): { name: string; heir: string; taken?: number } {
    const views = this.views();
    const topology = this.d.router()?.topology;
    const dead = views.find((v) => v.name === nameOrNick || topology?.get(v.name)?.nickname === nameOrNick);
    if (!dead) throw new WeaveError("E_NO_PEER", `no peer named "${nameOrNick}" is known`);
    if (dead.reachable)
      throw new WeaveError(
        "E_PEER_ALIVE",
        `peer ${dead.name} is reachable; only a peer that is gone for good can be removed`,
      );
    const heir = heirOf(
      dead.name,
      this.d.name,
      views.filter((v) => v.state?.ring === this.state.ring),
    );
    const before = spanSize(this.state.owned);
    if (!this.state.removing?.includes(dead.name) && !this.state.reclaimed.includes(dead.name))
      this.set({ ...this.state, removing: [...(this.state.removing ?? []), dead.name] });
    this.step();
    return { name: dead.name, heir, ...(heir === this.d.name ? { taken: spanSize(this.state.owned) - before } : {}) };
  }

  /** Resolves once this peer owns a free address, or after `ms`. */
  async waitForSpace(ms: number): Promise<boolean> {
    if (this.d.allocator.free > 0) return true;
    this.step();
    if (this.d.allocator.free > 0) return true;
    return new Promise((resolve) => {
      let settled = false;
      const done = (v: boolean) => {
        if (!settled) resolve(v);
        settled = true;
      };
      const waiter = () => done(true);
      this.d.later(ms, () => {
        this.spaceWaiters = this.spaceWaiters.filter((w) => w !== waiter);
        done(this.d.allocator.free > 0);
      });
      this.spaceWaiters.push(waiter);
    });
  }
}
