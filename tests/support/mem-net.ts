/**
 * An in-memory network and a virtual clock for mesh tests: links deliver bytes as
 * scheduled events, and `run()` advances virtual time, running every due event, so
 * tests are deterministic and take no real time.
 */
import type { Link, Scheduler, Transport } from "../../net/mesh/transport.ts";

type Task = { at: number; seq: number; fn: () => void; cancelled: boolean };

export class VirtualClock implements Scheduler {
  private t = 0;
  private seq = 0;
  private tasks: Task[] = [];

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    const task = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.tasks.push(task);
    return () => {
      task.cancelled = true;
    };
  }

  /** Run events in time order until `ms` of virtual time have passed. Returns events run. */
  async run(ms: number): Promise<number> {
    const end = this.t + ms;
    let n = 0;
    for (;;) {
      this.tasks = this.tasks.filter((x) => !x.cancelled);
      let best: Task | undefined;
      for (const x of this.tasks) if (!best || x.at < best.at || (x.at === best.at && x.seq < best.seq)) best = x;
      if (!best || best.at > end) break;
      this.tasks.splice(this.tasks.indexOf(best), 1);
      this.t = best.at;
      best.fn();
      n++;
      // let promise continuations (dial results) run at this instant
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setImmediate(r));
    this.t = end;
    return n;
  }
}

class MemLink implements Link {
  peer!: MemLink;
  // Like a socket buffer: bytes that arrive before anyone reads wait for the reader.
  private early: Uint8Array[] = [];
  private dataCb: (b: Uint8Array) => void = (b) => void this.early.push(b);
  private closeCb: () => void = () => {};
  closed = false;
  constructor(
    readonly remoteAddress: string,
    private net: MemNet,
  ) {}
  send(bytes: Uint8Array): void {
    if (this.closed || this.net.isCut(this.remoteAddress, this.peer.remoteAddress)) return;
    this.net.bytes += bytes.length;
    const copy = bytes.slice();
    this.net.clock.after(this.net.latencyMs, () => {
      if (!this.peer.closed) this.peer.dataCb(copy);
    });
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.net.clock.after(this.net.latencyMs, () => {
      if (!this.peer.closed) {
        this.peer.closed = true;
        this.peer.closeCb();
      }
    });
  }
  onData(cb: (b: Uint8Array) => void): void {
    this.dataCb = cb;
    for (const b of this.early.splice(0)) cb(b);
  }
  onClose(cb: () => void): void {
    this.closeCb = cb;
  }
  /** Drop dead without telling the other end (a killed process or a cut cable). */
  vanish(): void {
    this.closed = true;
  }
}

export class MemNet {
  listeners = new Map<string, (l: Link) => void>();
  links: MemLink[] = [];
  cuts = new Set<string>();
  bytes = 0;
  latencyMs = 1;
  constructor(readonly clock: VirtualClock) {}

  isCut(a: string, b: string): boolean {
    const ha = a.split(":")[0]!;
    const hb = b.split(":")[0]!;
    return this.cuts.has(ha) || this.cuts.has(hb);
  }

  transport(self: string): Transport {
    const net = this;
    return {
      listen(address, onLink) {
        net.listeners.set(address, onLink);
      },
      async dial(address) {
        const l = net.listeners.get(address);
        if (!l || net.isCut(self, address)) throw new Error(`connect ${address}: connection refused`);
        const mine = new MemLink(address, net);
        const theirs = new MemLink(self, net);
        mine.peer = theirs;
        theirs.peer = mine;
        net.links.push(mine, theirs);
        l(theirs);
        return mine;
      },
      close() {
        net.listeners.delete(self);
      },
    };
  }

  /** A peer's process dies: its listener and links vanish; the others see resets. */
  kill(address: string): void {
    this.listeners.delete(address);
    for (const l of this.links) if (l.peer.remoteAddress === address && !l.closed) l.close();
  }
}
