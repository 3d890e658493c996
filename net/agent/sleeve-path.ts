/**
 * The agent's side of the sleeve: decides each peer's data path (paths.ts) from the mesh's
 * routes and the fast path's heartbeats, and keeps the sleeve in line with it: the TAP
 * device as a port of the bridge (no learning: static entries send sleeve peers' pods'
 * frames to it; broadcast and unknown unicast reach it too, and go to every sleeve
 * peer, as VXLAN's flood entry carries them), those entries, and the
 * engine's table (net/host/sleeve.ts moves the frames; the agent never does).
 *
 * The two ends of a pair move a second or so apart, and meanwhile the peer's pods'
 * frames still arrive over VXLAN while ours go out in the sleeve (or the other way
 * round); both work, as each side takes what either path brings. The entries are
 * sticky: a frame from a sleeve peer's pod arriving over VXLAN would otherwise move its
 * entry to the VXLAN port (the bridge learns there), whose table has no entry for that
 * pod any more, and the replies would be lost until the peer moved too.
 *
 * Heartbeats go from this node's bridge address to each directly connected peer's, over
 * the kernel's VXLAN (its bridge entry never leaves VXLAN: vxlan.ts), every HEARTBEAT_MS;
 * the engine answers them on the other side and hands us the answers.
 */
import { randomBytes } from "node:crypto";
import { numToIp } from "../cidr.ts";
import type { Occurrence } from "../events/aggregator.ts";
import type { Link, NetHost } from "../host/host.ts";
import type { Router } from "../mesh/router.ts";
import { sleeveMacs, type Remote } from "../encap/vxlan.ts";
import { pathChanged } from "./node-events.ts";
import type { SleeveStats, SleeveTable } from "../host/sleeve.ts";
import { SLEEVE_PORT } from "../sleeve/frame.ts";
import { HEARTBEAT_MS, Paths, type PathChange, type PeerPath, type PeerRoute } from "./paths.ts";

export { SLEEVE_PORT };
export const SLEEVE_TAP = "weave-sleeve";
const NUD_PERMANENT = 0x80;
const TAP_TXQLEN = 5000;

/** What the agent needs of the engine (net/host/sleeve.ts Sleeve; tests give a fake). */
export interface SleeveEngine {
  start(): Promise<void>;
  setTable(t: SleeveTable): void;
  ping(to: string, nonce: bigint): void;
  onPong(cb: (from: string, nonce: bigint, sentAtMs: number) => void): void;
  stats(): SleeveStats;
  stop(): Promise<void>;
}

export type SleeveDeps = {
  engine: SleeveEngine;
  host: NetHost;
  router: Router;
  /** Frames are sealed with each connection's keys (a password is set). */
  sealed: boolean;
  log(msg: string): void;
  event(o: Occurrence): void;
  now(): number;
  every(ms: number, fn: () => void): () => void;
  /** Ask the agent for a datapath pass (a peer moved). */
  changed(): void;
};

/** The ports the fast path needs, for the reasons and the fixes. */
const fastPorts = (sealed: boolean) => (sealed ? "UDP 6785 (WireGuard)" : "UDP 6784 (VXLAN)");

export class SleevePath {
  readonly paths: Paths;
  /** Why the sleeve cannot run (then every peer stays on the fast path). */
  failure = "";
  private running = false;
  private stopTimer?: () => void;
  /** Heartbeat nonces carry this session's 32 random bits above a sequence number. */
  private session = BigInt(randomBytes(4).readUInt32BE(0));
  private seq = 0n;
  private byBridge = new Map<string, string>();
  private tableJson = "";
  private tapIndex?: number;

  constructor(private d: SleeveDeps) {
    this.paths = new Paths(fastPorts(d.sealed));
  }

  start(): void {
    this.d.engine.onPong((from, nonce) => this.answered(from, nonce));
    this.d.engine.start().then(
      () => {
        this.running = true;
        this.d.log(
          `sleeve: ${SLEEVE_TAP} up, UDP ${SLEEVE_PORT}${this.d.sealed ? ", sealed with each connection's keys" : ""}`,
        );
        this.stopTimer = this.d.every(HEARTBEAT_MS, () => this.heartbeat());
        this.d.changed();
      },
      (e) => {
        this.failure = `the sleeve cannot start: ${(e as Error).message}`;
        this.d.log(`sleeve: ${this.failure}; peers stay on the fast path whether it crosses or not`);
      },
    );
  }

  async stop(): Promise<void> {
    this.stopTimer?.();
    this.running = false;
    await this.d.engine.stop();
  }

  get active(): boolean {
    return this.running;
  }

  /** What the engine counted (zeros before it runs). */
  stats(): SleeveStats {
    return this.running
      ? this.d.engine.stats()
      : { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, relayed: 0, drops: {} };
  }

  /** The mesh's routes to every reachable peer, as paths.ts reads them. */
  private routes(): PeerRoute[] {
    const t = this.d.router.topology;
    const out: PeerRoute[] = [];
    for (const [name, via] of t.routes()) {
      const e = t.get(name);
      if (name === t.self || !e) continue;
      const viaNickname = t.get(via)?.nickname ?? via;
      out.push({ name, nickname: e.nickname, via, viaNickname, testable: e.bridge !== undefined });
    }
    return out;
  }

  private heartbeat(): void {
    const t = this.d.router.topology;
    this.byBridge.clear();
    for (const p of this.paths.all()) {
      const bridge = t.get(p.name)?.bridge;
      if (p.via !== undefined || bridge === undefined) continue;
      const ip = numToIp(bridge);
      this.byBridge.set(ip, p.name);
      this.paths.sent(p.name);
      this.seq++;
      this.d.engine.ping(ip, (this.session << 32n) | (this.seq & 0xffffffffn));
    }
    this.report(this.paths.update(this.d.now(), this.routes()));
  }

  private answered(from: string, nonce: bigint): void {
    const name = this.byBridge.get(from);
    if (name && nonce >> 32n === this.session) this.paths.answered(name);
  }

  private report(changes: PathChange[]): void {
    for (const c of changes) {
      const p = c.peer;
      const to = p.path === "sleeve" ? `sleeve${p.via ? ` through ${p.viaNickname}` : ""}: ${p.reason}` : "fastdp";
      this.d.log(`datapath: peer ${p.nickname} (${p.name}) ${c.from ? `${describe(c.from)} -> ` : ""}${to}`);
      const o = pathChanged(c, fastPorts(this.d.sealed));
      if (o) this.d.event(o);
    }
    if (changes.length) this.d.changed();
  }

  /** Each remote with the path its pods' traffic takes (all fastdp while the sleeve is not running). */
  pass(remotes: Remote[]): Remote[] {
    if (!this.running) return remotes;
    this.report(this.paths.update(this.d.now(), this.routes()));
    return remotes.map((r) => ({ ...r, path: this.paths.get(r.name)?.path ?? "fastdp" }));
  }

  /** The path of one peer (undefined: not reachable, or the sleeve is not running). */
  pathOf(name: string): PeerPath | undefined {
    return this.running ? this.paths.get(name) : undefined;
  }

  /**
   * Bring the TAP port, its bridge entries and the engine's table in line with `remotes`
   * (as `pass` returned them, underlay addresses). Returns what failed.
   */
  apply(bridge: Link, mtu: number, self: string, remotes: Remote[]): string[] {
    if (!this.running) return [];
    const errors: string[] = [];
    const host = this.d.host;
    const tap = host.link(SLEEVE_TAP);
    if (!tap) return [`${SLEEVE_TAP} is missing`];
    try {
      if (tap.master !== bridge.index || tap.mtu !== mtu || !tap.up) {
        host.setLink(tap.index, { master: bridge.index, mtu, up: true });
        this.tapIndex = undefined;
      }
      if (this.tapIndex !== tap.index) {
        // isolated, as VXLAN's port is (datapath.ts): nothing from another node goes back out to one
        host.setBridgePort(tap.index, { learning: false, isolated: true });
        // The TX worker reads in bursts; a longer queue spares TCP the drops of a full one.
        host.setLink(tap.index, { txqlen: TAP_TXQLEN });
        this.tapIndex = tap.index;
      }
    } catch (e) {
      return [`${SLEEVE_TAP}: ${(e as Error).message}`];
    }
    const want = sleeveMacs(remotes);
    const wantMacs = new Set(want.map((m) => m.mac));
    const entries = host
      .fdb(tap.index)
      .filter((f) => f.master !== undefined && f.dst === undefined && !((f.state ?? 0) & NUD_PERMANENT));
    const sticky = new Set(entries.filter((f) => f.sticky).map((f) => f.mac));
    for (const { mac } of entries)
      if (!wantMacs.has(mac))
        attempt(errors, `delete ${mac} from ${SLEEVE_TAP}`, () => host.delPortFdb({ port: tap.index, mac }));
    // a plain static entry (an older agent's) is replaced by a sticky one
    for (const mac of wantMacs)
      if (!sticky.has(mac))
        attempt(errors, `add ${mac} to ${SLEEVE_TAP}`, () => host.addPortFdb({ port: tap.index, mac }));
    this.setTable(self, remotes, want);
    return errors;
  }

  private setTable(self: string, remotes: Remote[], macs: { mac: string; peer: string }[]): void {
    const t = this.d.router.topology;
    const routes = t.routes();
    const ipOf = new Map(remotes.map((r) => [r.name, r.ip]));
    const neighbours: SleeveTable["neighbours"] = [];
    const pingFrom: string[] = [];
    for (const r of remotes) {
      if (routes.get(r.name) !== r.name) continue;
      const keys = this.d.sealed ? this.d.router.sleeveKeys(r.name) : undefined;
      neighbours.push({ ip: r.ip, ...(keys ? { sendKey: base64(keys.send), recvKey: base64(keys.recv) } : {}) });
      if (r.bridge !== undefined) pingFrom.push(numToIp(r.bridge));
    }
    const viaIp = (name: string) => ipOf.get(routes.get(name) ?? "");
    const table: SleeveTable = {
      self,
      neighbours,
      routes: remotes.flatMap((r) => {
        const via = viaIp(r.name);
        return via ? [{ dst: r.ip, via }] : [];
      }),
      macs,
      flood: remotes.filter((r) => r.path === "sleeve").map((r) => r.ip),
      pingFrom,
      sealed: this.d.sealed,
      // a key may leave the table and come back while its connection lives (a route that is
      // not symmetric yet): its counter and replay window must be kept until the connection ends
      liveKeys: this.d.sealed ? this.d.router.liveSleeveKeys().flatMap((k) => [base64(k.send), base64(k.recv)]) : [],
    };
    const json = JSON.stringify(table);
    if (json === this.tableJson) return;
    this.tableJson = json;
    this.d.engine.setTable(table);
  }
}

function describe(p: PeerPath): string {
  return p.path === "sleeve" ? `sleeve${p.via ? ` through ${p.viaNickname}` : ""}` : "fastdp";
}

function base64(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

function attempt(errors: string[], what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    errors.push(`${what}: ${(e as Error).message}`);
  }
}
