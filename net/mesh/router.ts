/**
 * The mesh router of one peer: connections to other peers, the handshake, topology
 * gossip, heartbeats, and the connection maker that keeps dialling its targets.
 *
 * The gossip exchange itself (push, announce, request, digest) is in gossip.ts; here
 * are the connections it runs over and our own entry, which we push whole whenever it
 * changes (the first version at once, later ones debounced). The wire below the frames
 * (preambles, the version, encryption) is channel.ts. Nothing here touches sockets or
 * timers directly: both come in through `Transport` and `Scheduler`.
 */
import { encodeFrame, FrameType, ProtocolError, PROTOCOL_MAX, PROTOCOL_MIN, type Frame } from "./frame.ts";
import { Channel, RefusedError, type MeshSecret } from "./channel.ts";
import { keyPair, type KeyPair } from "../crypto/suite.ts";
import { dialPassword, generations } from "../crypto/rotation.ts";
import { Topology, TopologyError, type PeerEntry } from "./topology.ts";
import { Gossip } from "./gossip.ts";
import { nameToNum, randomUid } from "./peer-name.ts";
import type { Link, Scheduler, Transport } from "./transport.ts";

export type RouterOptions = {
  name: string;
  nickname: string;
  uid?: string;
  /** Where we listen, "ip:port". */
  listen: string;
  /** The address peers reach us at, "ip:port" (default: `listen`); goes into our entry. */
  advertise?: string;
  transport: Transport;
  sched: Scheduler;
  log(msg: string): void;
  connLimit?: number;
  /** Dial the addresses peers gossip, not only our targets (Weave's default). */
  discovery?: boolean;
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** Batching delay for forwarding news. */
  gossipDelayMs?: number;
  /** Debounce for publishing our own entry after a change. */
  publishDelayMs?: number;
  fullGossipMs?: number;
  forgetAfterMs?: number;
  /** Entries never forgotten, however long unreachable (the agent: peers that own address space). */
  keep?: (e: PeerEntry) => boolean;
  backoffMs?: { initial: number; max: number };
  versions?: { min: number; max: number };
  /**
   * The mesh's pre-shared key, from WEAVE_PASSWORD (net/crypto/password.ts). With it,
   * every connection runs the Noise handshake and seals its frames, and peers without
   * it are refused.
   */
  psk?: Uint8Array;
  /**
   * While rotating: the next password's key. Listeners accept either; diallers pick one
   * per target (net/crypto/rotation.ts, dialPassword).
   */
  pskNext?: Uint8Array;
  /** Our Noise static key (default: a fresh one per start). */
  staticKey?: KeyPair;
};

export type ConnState = "pending" | "established";

/** A connection to a target failed: `attempt` counts the failures since it last worked. */
export type DialFailure = { address: string; attempt: number; why: string };

export type ConnectionInfo = {
  address: string;
  outbound: boolean;
  state: ConnState | "failed" | "retrying";
  info: string;
  name?: string;
  nickname?: string;
  encrypted: boolean;
  /** Which of our passwords its handshake used (0 current, 1 next), with a password. */
  password?: number;
};

class Connection {
  channel!: Channel;
  state: ConnState = "pending";
  peer?: { name: string; nickname: string; uid: string };
  lastRecv: number;
  closed = false;
  constructor(
    readonly link: Link,
    readonly outbound: boolean,
    readonly address: string,
    now: number,
  ) {
    this.lastRecv = now;
  }
}

type Target = {
  address: string;
  attempt: number;
  nextTry: number;
  dialing: boolean;
  lastError?: string;
  explicit: boolean;
  /** Refusals for a wrong password in a row: the dialler then tries its other password. */
  wrongPassword?: number;
};

export class Router {
  readonly topology: Topology;
  readonly uid: string;
  private own: PeerEntry;
  private conns = new Set<Connection>();
  private targets = new Map<string, Target>();
  private gossip: Gossip<Connection>;
  private publishPending = false;
  private publishDue = 0;
  /** Until our first publication, our entry stays out of digests and full gossip. */
  private published = false;
  private changePending = false;
  private unreachableSince = new Map<string, number>();
  private timers: (() => void)[] = [];
  private listeners: (() => void)[] = [];
  private stopped = false;
  private o: Required<Omit<RouterOptions, "uid" | "psk" | "pskNext" | "staticKey">>;
  private secret?: MeshSecret;
  /** Our passwords' fingerprints, current first (in our entry). */
  private passwords: string[] = [];
  private self: string;
  private selfNum: number;
  /** Bytes we sent and received over mesh connections (the quiet-traffic benchmark, /metrics). */
  bytesSent = 0;
  bytesReceived = 0;
  /** Established connections that ended (weave_connection_terminations_total). */
  terminations = 0;
  private failureListeners: ((f: DialFailure) => void)[] = [];

  constructor(opts: RouterOptions) {
    this.o = {
      connLimit: 200,
      discovery: true,
      heartbeatMs: 2000,
      deadAfterMs: 7000,
      gossipDelayMs: 50,
      publishDelayMs: 500,
      fullGossipMs: 30000,
      forgetAfterMs: 60000,
      backoffMs: { initial: 1000, max: 360000 },
      keep: () => false,
      versions: { min: PROTOCOL_MIN, max: PROTOCOL_MAX },
      ...opts,
    } as Required<Omit<RouterOptions, "uid" | "psk" | "pskNext" | "staticKey">>;
    if (opts.psk) {
      const g = generations([opts.psk, ...(opts.pskNext ? [opts.pskNext] : [])]);
      this.secret = { psk: g[0]!.psk, ...(g[1] ? { next: g[1].psk } : {}), staticKey: opts.staticKey ?? keyPair() };
      this.passwords = g.map((x) => x.fingerprint);
    }
    this.uid = opts.uid ?? randomUid();
    this.self = opts.advertise ?? opts.listen;
    this.selfNum = nameToNum(opts.name);
    this.topology = new Topology(opts.name);
    this.own = {
      name: opts.name,
      nickname: opts.nickname,
      uid: this.uid,
      version: opts.sched.now(),
      addresses: [this.self],
      connections: [],
      pods: [],
      ...(this.passwords.length ? { passwords: this.passwords } : {}),
    };
    this.topology.setOwn(this.own);
    this.gossip = new Gossip<Connection>({
      topology: this.topology,
      selfNum: this.selfNum,
      sched: opts.sched,
      delayMs: this.o.gossipDelayMs,
      send: (c, frame) => this.send(c, frame),
      established: () => [...this.conns].filter((c) => c.state === "established"),
      published: () => this.published,
      changed: () => this.changed(),
      aboutSelf: (e) => {
        if (e.version < this.own.version) return;
        // An earlier incarnation of us is still remembered: outbid it.
        this.own = { ...this.own, version: e.version };
        this.publish();
      },
      after: (ms, fn) => this.after(ms, fn),
    });
  }

  get name(): string {
    return this.o.name;
  }

  /** Fingerprints of the passwords we hold, current first (none without a password). */
  get passwordFingerprints(): string[] {
    return this.passwords;
  }

  /** Whether we hold a password: then every connection is encrypted, or refused. */
  get encrypted(): boolean {
    return this.secret !== undefined;
  }

  start(): void {
    this.o.transport.listen(this.o.listen, (l) => this.accept(l, false, l.remoteAddress));
    this.every(this.o.heartbeatMs, () => this.heartbeat());
    this.every(this.o.fullGossipMs, () => this.fullGossip());
    this.every(1000, () => this.connectionMaker());
    this.every(30000, () => this.forgetUnreachable());
    this.connectionMaker();
  }

  stop(): void {
    this.stopped = true;
    for (const cancel of this.timers) cancel();
    for (const c of [...this.conns]) this.drop(c, "router stopping", false);
    this.o.transport.close();
  }

  /** Called on every failed attempt to connect to a target (dial, handshake or loss). */
  onConnectionFailure(cb: (f: DialFailure) => void): void {
    this.failureListeners.push(cb);
  }

  /** Called (debounced) whenever the topology or our connections changed. */
  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /**
   * Set what our entry says about us: addresses to reach us at, pods and bridge, app
   * state. `urgent` publishes within the gossip delay instead of the debounce.
   */
  setLocal(
    o: { addresses?: string[]; pods?: number[]; app?: unknown; wgKey?: string; bridge?: number },
    urgent = false,
  ): void {
    const addresses = o.addresses ?? this.own.addresses;
    const pods = o.pods ?? this.own.pods;
    const app = "app" in o ? o.app : this.own.app;
    const wgKey = o.wgKey ?? this.own.wgKey;
    const bridge = o.bridge ?? this.own.bridge;
    if (
      sameList(addresses, this.own.addresses) &&
      sameList(pods, this.own.pods) &&
      JSON.stringify(app) === JSON.stringify(this.own.app) &&
      wgKey === this.own.wgKey &&
      bridge === this.own.bridge
    )
      return;
    const optional = { ...(wgKey === undefined ? {} : { wgKey }), ...(bridge === undefined ? {} : { bridge }) };
    this.own = { ...this.own, addresses, pods, app, ...optional };
    this.publish(urgent);
  }

  /** Add addresses to keep connected to ("ip" or "ip:port"). */
  addTargets(addrs: string[]): void {
    for (const a of addrs) {
      const address = this.withPort(a);
      if (address === this.self) continue;
      const t = this.targets.get(address);
      if (t) t.explicit = true;
      else this.targets.set(address, { address, attempt: 0, nextTry: 0, dialing: false, explicit: true });
    }
    this.connectionMaker();
  }

  /** Stop dialling addresses no longer wanted (e.g. a Node deleted). */
  removeTargets(addrs: string[]): void {
    for (const a of addrs) {
      this.targets.delete(this.withPort(a));
    }
  }

  private withPort(a: string): string {
    return a.includes(":") ? a : `${a}:${this.self.split(":").pop()}`;
  }

  /** Targets we were given (not discovered). */
  explicitTargets(): string[] {
    return [...this.targets.values()].filter((t) => t.explicit).map((t) => t.address);
  }

  /** The sleeve's keys for the established connection to `name` (with a password), from its handshake. */
  sleeveKeys(name: string): { send: Uint8Array; recv: Uint8Array } | undefined {
    for (const c of this.conns) if (c.state === "established" && c.peer?.name === name) return c.channel.sleeveKeys;
    return undefined;
  }

  /**
   * The sleeve's keys of every established connection: a key outside them is dead for good
   * (each handshake makes new ones, and a connection that ended never comes back).
   */
  liveSleeveKeys(): { send: Uint8Array; recv: Uint8Array }[] {
    const keys: { send: Uint8Array; recv: Uint8Array }[] = [];
    for (const c of this.conns) if (c.state === "established" && c.channel.sleeveKeys) keys.push(c.channel.sleeveKeys);
    return keys;
  }

  established(): { name: string; nickname: string; address: string; outbound: boolean }[] {
    return [...this.conns]
      .filter((c) => c.state === "established")
      .map((c) => ({ name: c.peer!.name, nickname: c.peer!.nickname, address: c.address, outbound: c.outbound }));
  }

  connections(): ConnectionInfo[] {
    const out: ConnectionInfo[] = [...this.conns].map((c) => ({
      address: c.address,
      outbound: c.outbound,
      state: c.state,
      info: c.state === "established" ? `${c.peer!.name}(${c.peer!.nickname})` : "handshaking",
      name: c.peer?.name,
      nickname: c.peer?.nickname,
      encrypted: c.channel.encrypted,
      ...(c.channel.pskIndex === undefined ? {} : { password: c.channel.pskIndex }),
    }));
    const busy = this.busyAddresses();
    for (const t of this.targets.values()) {
      if (t.dialing || busy.has(t.address)) continue;
      out.push({
        address: t.address,
        outbound: true,
        state: t.lastError ? "failed" : "retrying",
        info: t.lastError ?? "waiting to dial",
        encrypted: false,
      });
    }
    return out;
  }

  // --- connections -------------------------------------------------------------

  private async dial(t: Target): Promise<void> {
    t.dialing = true;
    try {
      const link = await this.o.transport.dial(t.address);
      t.dialing = false;
      if (this.stopped) return link.close();
      this.accept(link, true, t.address);
    } catch (e) {
      t.dialing = false;
      this.failed(t, (e as Error).message);
    }
  }

  private failed(t: Target, why: string): void {
    t.lastError = why;
    t.attempt++;
    const base = Math.min(this.o.backoffMs.max, this.o.backoffMs.initial * 1.5 ** (t.attempt - 1));
    t.nextTry = this.o.sched.now() + base * (0.75 + Math.random() * 0.5);
    for (const l of this.failureListeners) l({ address: t.address, attempt: t.attempt, why });
  }

  /** The PSK a dial to `address` mixes into message 3 (net/crypto/rotation.ts, dialPassword). */
  private dialKey(address: string): Uint8Array | undefined {
    const s = this.secret;
    if (!s?.next) return undefined;
    const entry = this.topology.entries().find((e) => e.name !== this.o.name && e.addresses.includes(address));
    const i = dialPassword(this.passwords, entry?.passwords, this.targets.get(address)?.wrongPassword ?? 0);
    return i === 1 ? s.next : s.psk;
  }

  private accept(link: Link, outbound: boolean, address: string): void {
    const c = new Connection(link, outbound, address, this.o.sched.now());
    c.channel = new Channel({
      outbound,
      address,
      versions: this.o.versions,
      secret: this.secret,
      ...(outbound ? { dialWith: this.dialKey(address) } : {}),
      send: (bytes) => {
        this.bytesSent += bytes.length;
        link.send(bytes);
      },
    });
    this.conns.add(c);
    // Our preamble first: registering for data may hand us the peer's at once.
    c.channel.start();
    link.onData((b) => {
      this.bytesReceived += b.length;
      this.receive(c, b);
    });
    link.onClose(() => this.hungUp(c));
    // A peer that never completes the handshake is dropped by the heartbeat check.
  }

  /** The peer closed. Right after our last handshake message, that is its verdict on our password. */
  private hungUp(c: Connection): void {
    if (c.channel.awaitingProof) {
      const t = this.targets.get(c.address);
      if (t) t.wrongPassword = (t.wrongPassword ?? 0) + 1;
      this.refuse(c, c.channel.hungUp());
    } else this.drop(c, "connection closed", true);
  }

  /** Both ends' setups cannot talk: say why, and dial again only after the backoff. */
  private refuse(c: Connection, why: string): void {
    this.o.log(why);
    const t = c.outbound ? this.targets.get(c.address) : undefined;
    this.drop(c, why, false);
    if (t) this.failed(t, why);
  }

  private sendHello(c: Connection): void {
    const hello = { name: this.o.name, nickname: this.o.nickname, uid: this.uid };
    this.send(c, encodeFrame(FrameType.Hello, JSON.stringify(hello)));
  }

  private drop(c: Connection, why: string, retry: boolean): void {
    if (c.closed) return;
    c.closed = true;
    this.conns.delete(c);
    c.link.close();
    const t = c.outbound ? this.targets.get(c.address) : undefined;
    if (c.state === "established") {
      this.terminations++;
      this.o.log(`connection to ${c.peer!.nickname} (${c.peer!.name}) at ${c.address} lost: ${why}`);
      if (t) {
        t.attempt = 0;
        this.failed(t, why);
        t.nextTry = this.o.sched.now() + this.o.backoffMs.initial * Math.random();
      }
      if (!this.established().some((e) => e.name === c.peer!.name)) {
        this.own = { ...this.own, connections: this.own.connections.filter((n) => n !== c.peer!.name) };
        this.publish();
      }
    } else if (t && retry) {
      this.failed(t, why);
    }
  }

  private receive(c: Connection, bytes: Uint8Array): void {
    if (c.closed) return;
    c.lastRecv = this.o.sched.now();
    try {
      const { frames, opened } = c.channel.push(bytes);
      if (opened) this.sendHello(c);
      for (const f of frames) {
        if (c.closed) return;
        this.handle(c, f);
      }
    } catch (e) {
      if (e instanceof RefusedError) {
        this.refuse(c, e.message);
        return;
      }
      if (e instanceof ProtocolError || e instanceof TopologyError || e instanceof SyntaxError) {
        const msg = `dropping connection from ${c.peer ? `${c.peer.nickname} (${c.peer.name})` : c.address}: ${(e as Error).message}`;
        this.o.log(msg);
        const t = c.outbound ? this.targets.get(c.address) : undefined;
        this.drop(c, msg, false);
        if (t) this.failed(t, (e as Error).message);
        return;
      }
      throw e;
    }
  }

  private handle(c: Connection, f: Frame): void {
    const type = f.type;
    switch (type) {
      case FrameType.Hello: {
        const text = f.text();
        if (c.peer) throw new ProtocolError("second hello");
        const h = JSON.parse(text) as { name?: unknown; nickname?: unknown; uid?: unknown };
        if (typeof h.name !== "string" || typeof h.nickname !== "string" || typeof h.uid !== "string")
          throw new ProtocolError("malformed hello");
        c.peer = { name: h.name, nickname: h.nickname, uid: h.uid };
        if (h.name === this.o.name) {
          this.targets.delete(c.address);
          this.drop(c, "connected to ourselves", false);
          return;
        }
        this.established_(c);
        return;
      }
      case FrameType.Heartbeat:
        return;
      default:
        if (c.state !== "established") throw new ProtocolError(`frame 0x${type.toString(16)} before hello`);
        this.gossip.handle(c, f);
    }
  }
  private established_(c: Connection): void {
    const name = c.peer!.name;
    const target = c.outbound ? this.targets.get(c.address) : undefined;
    if (target) target.wrongPassword = 0;
    const dup = [...this.conns].find((o) => o !== c && o.state === "established" && o.peer!.name === name);
    if (dup) {
      // Both ends keep the connection dialled by the peer with the smaller name.
      const initiator = (x: Connection) => (x.outbound ? this.o.name : name);
      const keepNew = initiator(c) < initiator(dup) || (initiator(c) === initiator(dup) && c.outbound);
      const loser = keepNew ? dup : c;
      if (!keepNew) {
        this.drop(c, "duplicate connection", false);
        return;
      }
      loser.closed = true;
      this.conns.delete(loser);
      loser.link.close();
    }
    c.state = "established";
    const t = c.outbound ? this.targets.get(c.address) : undefined;
    if (t) {
      t.attempt = 0;
      t.lastError = undefined;
    }
    this.o.log(
      `connection to ${c.peer!.nickname} (${name}) at ${c.address} established (${c.outbound ? "outbound" : "inbound"})`,
    );
    if (!this.own.connections.includes(name)) {
      this.own = { ...this.own, connections: [...this.own.connections, name].sort() };
      this.publish();
    }
    this.send(c, this.gossip.digestFrame());
  }

  /** An encoded frame to one connection (sealed there if it is encrypted). */
  private send(c: Connection, frame: Uint8Array): void {
    if (c.closed) return;
    c.channel.sendFrame(frame);
  }

  // --- gossip ------------------------------------------------------------------

  /**
   * Publish our entry: the first version at once (peers learn of us fast), an urgent
   * change (the application's: address space asked for or given) within the gossip
   * delay, anything else debounced, folding a burst of connection changes into one.
   */
  private publish(urgent = false): void {
    const due = this.o.sched.now() + (!this.published || urgent ? this.o.gossipDelayMs : this.o.publishDelayMs);
    if (this.publishPending && this.publishDue <= due) return;
    this.publishPending = true;
    this.publishDue = due;
    this.after(due - this.o.sched.now(), () => {
      if (!this.publishPending || this.o.sched.now() < this.publishDue) return;
      this.publishPending = false;
      this.published = true;
      this.own = { ...this.own, version: Math.max(this.own.version + 1, this.o.sched.now()) };
      const frame = encodeFrame(FrameType.Gossip, this.topology.setOwn(this.own));
      for (const c of this.conns) if (c.state === "established") this.send(c, frame);
      this.changed();
    });
  }

  private fullGossip(): void {
    const est = [...this.conns].filter((c) => c.state === "established");
    const payload = this.gossip.digestFrame();
    for (let i = 0; i < 3 && est.length; i++)
      this.send(est.splice(Math.floor(Math.random() * est.length), 1)[0]!, payload);
  }

  private heartbeat(): void {
    const now = this.o.sched.now();
    for (const c of [...this.conns]) {
      if (now - c.lastRecv > this.o.deadAfterMs) {
        this.drop(
          c,
          c.state === "established"
            ? `nothing heard for ${Math.round((now - c.lastRecv) / 1000)}s`
            : "handshake timed out",
          true,
        );
        continue;
      }
      if (c.state === "established") this.send(c, encodeFrame(FrameType.Heartbeat));
    }
  }

  private changed(): void {
    if (this.changePending) return;
    this.changePending = true;
    this.after(this.o.gossipDelayMs, () => {
      this.changePending = false;
      for (const l of this.listeners) l();
    });
  }

  // --- connection maker and forgetting ------------------------------------------

  /** Addresses we have a connection at, or that belong to a peer we are connected to. */
  private busyAddresses(): Set<string> {
    const busy = new Set<string>();
    for (const c of this.conns) {
      busy.add(c.address);
      if (c.state === "established") for (const a of this.topology.get(c.peer!.name)?.addresses ?? []) busy.add(a);
    }
    return busy;
  }

  private connectionMaker(): void {
    if (this.stopped) return;
    if (this.o.discovery) {
      const connected = new Set(this.established().map((e) => e.name));
      for (const e of this.topology.entries()) {
        if (e.name === this.o.name || connected.has(e.name)) continue;
        for (const a of e.addresses)
          if (a !== this.self && !this.targets.has(a))
            this.targets.set(a, { address: a, attempt: 0, nextTry: 0, dialing: false, explicit: false });
      }
    }
    const now = this.o.sched.now();
    const busy = this.busyAddresses();
    let count = this.conns.size;
    for (const t of this.targets.values()) {
      if (count >= this.o.connLimit) break;
      if (t.dialing || t.nextTry > now || busy.has(t.address)) continue;
      count++;
      void this.dial(t);
    }
  }

  private forgetUnreachable(): void {
    const reach = this.topology.reachable();
    const now = this.o.sched.now();
    for (const e of this.topology.entries()) {
      if (reach.has(e.name) || this.o.keep(e)) {
        this.unreachableSince.delete(e.name);
        continue;
      }
      const since = this.unreachableSince.get(e.name);
      if (since === undefined) this.unreachableSince.set(e.name, now);
      else if (now - since > this.o.forgetAfterMs) {
        this.topology.forget(e.name);
        this.unreachableSince.delete(e.name);
        for (const a of e.addresses) if (!this.targets.get(a)?.explicit) this.targets.delete(a);
        this.o.log(
          `forgot peer ${e.nickname} (${e.name}): unreachable for ${Math.round(this.o.forgetAfterMs / 1000)}s`,
        );
        this.changed();
      }
    }
  }

  private after(ms: number, fn: () => void): void {
    this.o.sched.after(ms, () => {
      if (!this.stopped) fn();
    });
  }

  private every(ms: number, fn: () => void): void {
    let cancel = () => {};
    const tick = () => {
      if (this.stopped) return;
      fn();
      cancel = this.o.sched.after(ms, tick);
    };
    cancel = this.o.sched.after(ms, tick);
    this.timers.push(() => cancel());
  }
}

function sameList<T>(a: T[], b: T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
