/**
 * The agent of one node: owns the allocator and keeps the bridge. Side effects go
 * through the host layer and the store it is given; the HTTP server is in api.ts and
 * the process wiring in commands/agent.ts.
 */
import type { NetHost } from "../host/host.ts";
import type { NetnsCheck } from "../host/netns.ts";
import { CniExecutor, PENDING_DELETE_DELAY_MS } from "./cni-exec.ts";
import { Allocator, type AllocStore } from "../ipam/allocator.ts";
import { formatCidr, macForIp, withPrefix, type Cidr } from "../cidr.ts";
import { WeaveError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { reconcileBridge, type BridgeSpec } from "./bridge.ts";
import { overlayMtu } from "./mtu.ts";

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
};

/** The id under which the bridge's own address is held (Weave's "expose"). */
export const EXPOSE_ID = "weave:expose";

export type AgentDeps = {
  host: NetHost;
  openHost(netns: string): NetHost;
  checkNetns(path: string): NetnsCheck;
  store: AgentStore;
  log(msg: string): void;
  defer?(fn: () => void): void;
};

export class Agent {
  ready = false;
  reason = "starting";
  allocator!: Allocator;
  bridge?: BridgeSpec;
  mtuSource = "";
  readonly cni: CniExecutor;
  private host: NetHost;
  private store: AgentStore;
  private log: (msg: string) => void;

  constructor(readonly cfg: AgentConfig, deps: AgentDeps) {
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
    });
  }

  /** Load state and set up the bridge; throws WeaveError on a setting that cannot work. */
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
    this.allocator = new Allocator(this.cfg.range, this.store);

    let mtu = this.cfg.mtu;
    if (mtu === undefined) {
      const d = overlayMtu(this.host.links(), this.host.routes(), (l) => l.name === this.cfg.bridge || l.name.startsWith("vethwepl") || l.name.startsWith("vxlan"));
      mtu = d.mtu;
      this.mtuSource = d.from;
    } else this.mtuSource = "set by --mtu / WEAVE_MTU";

    const { entry } = this.allocator.allocate(EXPOSE_ID, this.cfg.bridge);
    this.bridge = { name: this.cfg.bridge, mtu, mac: macForIp(entry.address), cidr: withPrefix(entry.address, this.cfg.range) };
    this.reconcile();
    this.cni.flushLeftovers();
    this.ready = true;
    this.reason = "ready";
    this.log(`ready: bridge ${this.bridge.name} ${this.bridge.cidr} mtu ${mtu} (${this.mtuSource}), range ${range}, ${this.allocator.active - 1} pod addresses held`);
  }

  /** One pass of keeping the bridge as it should be; logs whatever it had to change. */
  reconcile(): void {
    if (!this.bridge) return;
    try {
      // Pods reach other nodes, the outside world and host ports through the node's
      // routing, as on any Kubernetes node.
      if (this.host.sysctl("net.ipv4.ip_forward") !== "1") {
        this.host.setSysctl("net.ipv4.ip_forward", "1");
        this.log("set net.ipv4.ip_forward=1");
      }
      const steps = reconcileBridge(this.host, this.bridge);
      if (steps.length) this.log(`bridge ${this.bridge.name}: ${steps.map((s) => s.op + ("cidr" in s ? ` ${s.cidr}` : "")).join(", ")}`);
      if (!this.ready && this.allocator) {
        this.ready = true;
        this.reason = "ready";
      }
    } catch (e) {
      this.ready = false;
      this.reason = `cannot set up bridge ${this.bridge.name}: ${(e as Error).message}`;
      this.log(this.reason);
    }
  }

  /** Pod attachments (everything but the bridge's own address). */
  podEntries() {
    return this.allocator.list().filter((e) => e.containerId !== EXPOSE_ID);
  }

  statusText(): string {
    const lines = [`Version: ${VERSION}`, `Name: ${this.cfg.nickname}`, `Status: ${this.ready ? "ready" : this.reason}`, `Range: ${formatCidr(this.cfg.range)}`];
    if (this.bridge) lines.push(`Bridge: ${this.bridge.name} ${this.bridge.cidr} mtu ${this.bridge.mtu}`);
    if (this.allocator) lines.push(`Pod IPs: ${this.podEntries().length} held, ${this.allocator.capacity - this.allocator.active} free`);
    return lines.join("\n") + "\n";
  }

  report(): Record<string, unknown> {
    return {
      Ready: this.ready,
      Reason: this.reason,
      Version: VERSION,
      NickName: this.cfg.nickname,
      Bridge: this.bridge ? { Name: this.bridge.name, Address: this.bridge.cidr, MTU: this.bridge.mtu, MTUSource: this.mtuSource } : null,
      IPAM: {
        Range: formatCidr(this.cfg.range),
        RangeNumIPs: this.allocator?.capacity ?? 0,
        ActiveIPs: this.allocator?.active ?? 0,
        DefaultSubnet: formatCidr(this.cfg.range),
        Owned: this.allocator ? this.podEntries().map((e) => ({ ContainerID: e.containerId, Ifname: e.ifname, Address: withPrefix(e.address, this.cfg.range), Pod: e.pod ?? null })) : [],
      },
    };
  }
}
