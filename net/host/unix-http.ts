/**
 * HTTP/1.1 over a unix socket, with the caller's credentials from the kernel. Bun.serve
 * cannot say who connected, so this is a small server on Bun.listen: at each connection
 * it asks the kernel for the peer's pid, uid and gid (getsockopt SO_PEERCRED on the
 * socket's fd), reads one request (request line, headers, a Content-Length body), hands
 * it to `handle` as a web Request with those credentials, writes the Response and closes
 * (Connection: close; one request per connection, which is how the plugin calls).
 * The socket file is made root-only (mode 0600) before anyone can connect to it.
 */
import { chmodSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { ptr } from "bun:ffi";
import { errno, libc, strerror } from "./libc.ts";

export type PeerCred = { pid: number; uid: number; gid: number };
export type UnixHandler = (req: Request, peer: PeerCred) => Promise<Response>;

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
/** The most a request may carry (CNI configurations with a prevResult are a few kB). */
const MAX_REQUEST = 1 << 20;

export function peerCred(fd: number): PeerCred {
  const cred = new Int32Array(3);
  const len = new Uint32Array([cred.byteLength]);
  if (libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ptr(cred), ptr(len)) !== 0)
    throw new Error(`getsockopt SO_PEERCRED: ${strerror(errno())}`);
  return { pid: cred[0]!, uid: cred[1]!, gid: cred[2]! };
}

type Conn = { buf: Buffer; peer?: PeerCred; done: boolean };

/** Where the request's head ends and the whole request does; undefined while the head is incomplete. */
function requestEnd(buf: Buffer): { headEnd: number; total: number } | undefined {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return undefined;
  const head = buf.subarray(0, headEnd).toString("latin1");
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
  return { headEnd, total: headEnd + 4 + length };
}

function parseRequest(buf: Buffer, headEnd: number, total: number): Request {
  const lines = buf.subarray(0, headEnd).toString("latin1").split("\r\n");
  const [method, target] = (lines[0] ?? "").split(" ");
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const body = method === "GET" || method === "HEAD" ? undefined : new Uint8Array(buf.subarray(headEnd + 4, total));
  return new Request(`http://weave${target ?? "/"}`, { method, headers, body });
}

async function httpBytes(res: Response): Promise<Buffer> {
  const body = Buffer.from(await res.arrayBuffer());
  const head = [`HTTP/1.1 ${res.status} ${res.statusText || "OK"}`];
  res.headers.forEach((value, key) => {
    if (key !== "content-length" && key !== "connection") head.push(`${key}: ${value}`);
  });
  head.push(`content-length: ${body.length}`, "connection: close", "", "");
  return Buffer.concat([Buffer.from(head.join("\r\n"), "latin1"), body]);
}

const plain = (status: number, text: string) => new Response(`${text}\n`, { status });

export function serveUnixHttp(path: string, handle: UnixHandler): { stop(): void } {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (existsSync(path)) rmSync(path);
  const oldMask = process.umask(0o177);
  let listener: ReturnType<typeof Bun.listen<Conn>>;
  try {
    listener = Bun.listen<Conn>({
      unix: path,
      data: { buf: Buffer.alloc(0), done: false },
      socket: {
        open(s) {
          s.data = { buf: Buffer.alloc(0), done: false };
          try {
            // `fd` is there at run time; Bun's types do not declare it
            s.data.peer = peerCred((s as unknown as { fd: number }).fd);
          } catch {
            s.end();
          }
        },
        async data(s, chunk) {
          if (s.data.done) return;
          s.data.buf = Buffer.concat([s.data.buf, chunk]);
          const end = requestEnd(s.data.buf);
          const tooBig = s.data.buf.length > MAX_REQUEST;
          if (!tooBig && (!end || s.data.buf.length < end.total)) return;
          s.data.done = true;
          const res = tooBig
            ? plain(413, "request too large")
            : await handle(parseRequest(s.data.buf, end!.headEnd, end!.total), s.data.peer!).catch((e) =>
                plain(500, (e as Error).message),
              );
          s.write(await httpBytes(res));
          s.end();
        },
      },
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(path, 0o600);
  return {
    stop() {
      listener.stop(true);
      rmSync(path, { force: true });
    },
  };
}
