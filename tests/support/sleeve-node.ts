/**
 * One sleeve engine per node namespace, as a child process speaking JSON lines (the hidden
 * `weave sleeve-selftest` command's protocol, commands/sleeve-selftest.ts).
 *
 * Run as a program (`ip netns exec <node> bun tests/support/sleeve-node.ts --tap <name>`)
 * it is that child, from source. Imported, it gives the test's side: `SleeveNode` starts
 * and drives a child by pid, and `compileSleeveNode` builds this file into a single binary
 * with the product's flags and worker entrypoints (scripts/build.ts), for the compiled
 * path when dist/weave has no sleeve-selftest command.
 */
import { createSocket } from "node:dgram";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { run } from "../../commands/sleeve-selftest.ts";
import type { SleeveStats, SleeveTable } from "../../net/host/sleeve.ts";
import { COMPILE_FLAGS, WORKER_ENTRYPOINTS } from "../../scripts/build.ts";
import { ROOT } from "./env.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    options: { tap: { type: "string" }, port: { type: "string" }, send: { type: "string" } },
  });
  if (values.send) process.exit(await sendDatagrams(values.send));
  process.exit(await run({ tap: values.tap, port: values.port }));
}

/** `--send ip:port`: stdin holds datagrams, each a 2-byte big-endian length and its bytes; send them all, in order. */
async function sendDatagrams(to: string): Promise<number> {
  const [host, port] = to.split(":") as [string, string];
  const input = new Uint8Array(await Bun.stdin.arrayBuffer());
  const sock = createSocket("udp4");
  let sent = 0;
  for (let at = 0; at + 2 <= input.length; ) {
    const len = (input[at]! << 8) | input[at + 1]!;
    const d = input.subarray(at + 2, at + 2 + len);
    at += 2 + len;
    await new Promise<void>((resolve, reject) => sock.send(d, Number(port), host, (e) => (e ? reject(e) : resolve())));
    // A pause now and then, so the receiver's socket buffer never overflows: every datagram must reach the engine.
    if (++sent % 200 === 0) await Bun.sleep(5);
  }
  sock.close();
  process.stdout.write(`${sent}\n`);
  return 0;
}

/** What `--send` reads: each datagram as a 2-byte length and its bytes. */
export function framedDatagrams(ds: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(ds.reduce((n, d) => n + 2 + d.length, 0));
  let at = 0;
  for (const d of ds) {
    out[at] = d.length >> 8;
    out[at + 1] = d.length & 255;
    out.set(d, at + 2);
    at += 2 + d.length;
  }
  return out;
}

/** Build this file as a compiled binary at `out`, exactly as scripts/build.ts builds dist/weave. */
export function compileSleeveNode(out: string): void {
  const entry = "tests/support/sleeve-node.ts";
  const r = Bun.spawnSync(["bun", "build", ...COMPILE_FLAGS, "--outfile", out, entry, ...WORKER_ENTRYPOINTS], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`bun build ${entry}: ${r.stderr.toString()}`);
}

/** Does dist/weave (or `weave`) have the hidden sleeve-selftest command? */
export function hasSelftest(weave: string): boolean {
  const r = Bun.spawnSync([weave, "sleeve-selftest", "--check"], { stdout: "pipe", stderr: "ignore" });
  return r.exitCode === 0 && r.stdout.toString().includes('"event":"check"');
}

export type Pong = { from: string; nonce: string; sentAtMs: number };

export class SleeveNode {
  readonly pongs: Pong[] = [];
  readonly logs: string[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private ready!: Promise<void>;
  private exited = false;

  private constructor(
    readonly ns: string,
    readonly tap: string,
    private readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }

  /** Start `cmd` (the child's argv, without --tap) in namespace `ns`; resolves once its engine runs. */
  static async start(ns: string, tap: string, cmd: string[]): Promise<SleeveNode> {
    const proc = Bun.spawn(["ip", "netns", "exec", ns, ...cmd, "--tap", tap], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const node = new SleeveNode(ns, tap, proc);
    node.ready = node.readLines();
    proc.exited.then(() => {
      node.exited = true;
      for (const w of node.waiting.values()) w.reject(new Error(`sleeve node in ${ns} exited`));
    });
    await node.ready;
    return node;
  }

  private readLines(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onLine = (line: string) => {
        const m = JSON.parse(line) as {
          event?: string;
          id?: number;
          ok?: boolean;
          result?: unknown;
          error?: string;
          msg?: string;
        } & Pong;
        if (m.event === "ready") resolve();
        else if (m.event === "error") reject(new Error(`sleeve node in ${this.ns}: ${m.error}`));
        else if (m.event === "pong") this.pongs.push({ from: m.from, nonce: m.nonce, sentAtMs: m.sentAtMs });
        else if (m.event === "log") this.logs.push(m.msg!);
        else if (m.id !== undefined) {
          const w = this.waiting.get(m.id);
          this.waiting.delete(m.id);
          if (m.ok) w?.resolve(m.result);
          else w?.reject(new Error(m.error));
        }
      };
      (async () => {
        let buffered = "";
        for await (const chunk of this.proc.stdout) {
          buffered += new TextDecoder().decode(chunk);
          for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (line.startsWith("{")) onLine(line);
            else this.logs.push(line);
          }
        }
        const err = await new Response(this.proc.stderr).text();
        if (err.trim()) this.logs.push(err.trim());
        reject(new Error(`sleeve node in ${this.ns} ended: ${err.trim()}`));
      })();
    });
  }

  private request(cmd: string, extra: Record<string, unknown> = {}): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(`sleeve node in ${this.ns} has exited`));
    const id = this.nextId++;
    const p = new Promise<unknown>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.proc.stdin.write(`${JSON.stringify({ id, cmd, ...extra })}\n`);
    this.proc.stdin.flush();
    return p;
  }

  setTable(table: SleeveTable): Promise<unknown> {
    return this.request("table", { table });
  }

  stats(): Promise<SleeveStats> {
    return this.request("stats") as Promise<SleeveStats>;
  }

  ping(to: string, nonce: bigint): Promise<unknown> {
    return this.request("ping", { to, nonce: nonce.toString() });
  }

  /** stop() in the child, then its exit. */
  async stop(): Promise<number> {
    if (!this.exited) await this.request("stop").catch(() => {});
    return await this.proc.exited;
  }

  /** By pid, for cleanup after a failure. */
  kill(): void {
    if (!this.exited) this.proc.kill(9);
  }
}

/** The child from source, with the bun that runs the tests. */
export const SOURCE_NODE = [process.execPath, join(ROOT, "tests/support/sleeve-node.ts")];
