/**
 * What the router needs from a network and a clock: connections that carry bytes, and
 * timers. The agent gives it TCP (net/host/tcp-transport.ts) and real time; the tests an
 * in-memory network and a virtual clock they advance themselves.
 */

export interface Link {
  readonly remoteAddress: string;
  send(bytes: Uint8Array): void;
  close(): void;
  onData(cb: (bytes: Uint8Array) => void): void;
  onClose(cb: () => void): void;
}

export interface Transport {
  /** Accept inbound links on `address` ("ip:port"). */
  listen(address: string, onLink: (l: Link) => void): void;
  /** Open a link to "ip:port"; rejects when nobody answers. */
  dial(address: string): Promise<Link>;
  close(): void;
}

export interface Scheduler {
  now(): number;
  /** Run `fn` after `ms`; returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
}

export const realScheduler: Scheduler = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

export const MESH_PORT = 6783;

/** "ip:port" -> [ip, port]; a bare ip gets the mesh port. */
export function splitHostPort(s: string, defaultPort = MESH_PORT): [string, number] {
  const i = s.lastIndexOf(":");
  if (i < 0) return [s, defaultPort];
  return [s.slice(0, i), Number(s.slice(i + 1))];
}
