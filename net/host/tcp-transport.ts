/**
 * The mesh's TCP transport over Bun's sockets, with the write queue Bun leaves to us:
 * `write` may take only part of a buffer, and the rest goes out on `drain`.
 */
import type { Socket, TCPSocketListener } from "bun";
import type { Link, Transport } from "../mesh/transport.ts";
import { splitHostPort } from "../mesh/transport.ts";

type Data = { link?: TcpLink };

/**
 * How long a dial may wait for the peer's answer. Without a bound, a peer behind a
 * firewall that drops (not rejects) SYNs holds the dial for the kernel's ~2 minutes of
 * SYN retries, and the failure, its backoff and its Event all wait that long.
 */
export const DIAL_TIMEOUT_MS = 5000;

class TcpLink implements Link {
  private queue: Uint8Array[] = [];
  private dataCb: (b: Uint8Array) => void;
  private closeCb: () => void = () => {};
  private early: Uint8Array[] = [];
  closed = false;

  constructor(
    private sock: Socket<Data>,
    readonly remoteAddress: string,
    /** Called once when the link ends, either way (the transport forgets it). */
    private forget: (l: TcpLink) => void = () => {},
  ) {
    this.dataCb = (b) => void this.early.push(b);
  }

  /** Frames sent in one turn of the event loop go out in one write. */
  private corked: Uint8Array[] = [];

  send(bytes: Uint8Array): void {
    if (this.closed) return;
    this.corked.push(bytes);
    if (this.corked.length === 1) queueMicrotask(() => this.uncork());
  }

  private uncork(): void {
    if (this.closed || !this.corked.length) return;
    const bytes = this.corked.length === 1 ? this.corked[0]! : Buffer.concat(this.corked);
    this.corked = [];
    if (this.queue.length) {
      this.queue.push(bytes);
      return;
    }
    const n = this.sock.write(bytes);
    if (n < bytes.length) this.queue.push(bytes.subarray(Math.max(0, n)));
  }

  drain(): void {
    while (this.queue.length) {
      const head = this.queue[0]!;
      const n = this.sock.write(head);
      if (n < head.length) {
        this.queue[0] = head.subarray(Math.max(0, n));
        return;
      }
      this.queue.shift();
    }
  }

  data(b: Uint8Array): void {
    this.dataCb(b);
  }

  ended(): void {
    if (this.closed) return;
    this.closed = true;
    const cb = this.closeCb;
    this.release();
    cb();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
    this.sock.end();
  }

  /** Once ended: out of the transport's set, and holding nothing of the router's (its callbacks, unsent bytes). */
  private release(): void {
    this.forget(this);
    this.dataCb = () => {};
    this.closeCb = () => {};
    this.queue = [];
    this.corked = [];
    this.early = [];
  }

  onData(cb: (b: Uint8Array) => void): void {
    this.dataCb = cb;
    for (const b of this.early.splice(0)) cb(b);
  }

  onClose(cb: () => void): void {
    this.closeCb = cb;
  }
}

const handlers = (onOpen?: (l: TcpLink) => void, forget?: (l: TcpLink) => void) => ({
  open(s: Socket<Data>) {
    if (!onOpen) return;
    s.data = { link: new TcpLink(s, `${s.remoteAddress}:${s.remotePort ?? 0}`, forget) };
    onOpen(s.data.link!);
  },
  data(s: Socket<Data>, b: Buffer) {
    s.data?.link?.data(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  },
  drain(s: Socket<Data>) {
    s.data?.link?.drain();
  },
  close(s: Socket<Data>) {
    s.data?.link?.ended();
  },
  error(s: Socket<Data>) {
    s.data?.link?.ended();
  },
});

export function tcpTransport(): Transport {
  let server: TCPSocketListener<Data> | undefined;
  /** Open links, so close() can end them; each leaves the set as it ends. */
  const links = new Set<TcpLink>();
  const forget = (l: TcpLink) => void links.delete(l);
  return {
    listen(address, onLink) {
      const [hostname, port] = splitHostPort(address);
      server = Bun.listen<Data>({
        hostname,
        port,
        socket: handlers((l) => {
          links.add(l);
          onLink(l);
        }, forget),
      });
    },
    async dial(address) {
      const [hostname, port] = splitHostPort(address);
      const connecting = Bun.connect<Data>({
        hostname,
        port,
        data: {},
        socket: {
          ...handlers(),
          connectError(_s: Socket<Data>, e: Error) {
            void e;
          },
        },
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${DIAL_TIMEOUT_MS / 1000}s (dropped by a firewall?)`)),
          DIAL_TIMEOUT_MS,
        );
      });
      let sock: Socket<Data>;
      try {
        sock = await Promise.race([connecting, timeout]);
      } catch (e) {
        // a connection that comes up after we gave up is closed at once
        connecting.then(
          (late) => late.end(),
          () => {},
        );
        throw e;
      } finally {
        clearTimeout(timer);
      }
      const link = new TcpLink(sock, address, forget);
      sock.data = { link };
      links.add(link);
      return link;
    },
    close() {
      server?.stop(true);
      for (const l of [...links]) l.close();
    },
  };
}
