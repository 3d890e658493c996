/**
 * WireGuard in userspace: Debian's `wireguard-go`, started, supervised and configured by
 * the agent (the tested implementation of net/host/wireguard.ts's interface).
 *
 * - **Process.** `wireguard-go -f weave-wg` in the node's namespace (nsenter when the
 *   caller is elsewhere), WG_PROCESS_FOREGROUND=1, nothing on its command line but the
 *   interface name. It makes the TUN `weave-wg`; we give it its address, MTU and up
 *   through the host layer (rtnetlink), then its keys and peers over its socket.
 * - **Socket.** wireguard-go 0.0.20220316 hardcodes /var/run/wireguard/<ifname>.sock
 *   (ipc/uapi_unix.go), and even with WG_UAPI_FD it watches that path and exits when it
 *   is missing; so on one machine two namespaces cannot both run `weave-wg` there. With
 *   `socketDir` (the lab: a directory per node) it runs in a private mount namespace
 *   (`unshare --mount`) with that directory bind-mounted on /var/run/wireguard: every
 *   node keeps the name `weave-wg`, nothing lands in the machine's /var/run/wireguard,
 *   and the mount goes away with the process. Without it (a real node, one agent per
 *   machine) the standard path is used, so `wg show weave-wg` works there.
 * - **UAPI.** get=1 / set=1 text (net/encap/wireguard-uapi.ts) over the unix socket
 *   (net/host/wg-uapi-socket.ts), one connection per request; no `wg` process per
 *   change, no key in argv.
 * - **Supervision.** When it exits it is started again after a back-off (0.1 s doubling
 *   to 5 s, back to 0.1 s once it has run 30 s), its link configured and the last
 *   desired state applied again; the caller hears of every step through `onEvent`.
 *   Meanwhile no VXLAN leaves in the clear: its source address (the tunnel address) went
 *   with the TUN, so the kernel cannot route it, and the fail-closed rule
 *   (net/host/wg-fail-closed.ts) drops whatever would leave outside the tunnel.
 * - **Restarts of the agent.** The pid goes to <socket dir>/<name>.pid. An agent that
 *   starts while its wireguard-go still runs (it outlives a killed agent and keeps
 *   carrying traffic) adopts it: same binary, same namespace, socket answering. It then
 *   watches the pid, since it cannot wait for a process that is not its child.
 * - **Stop.** SIGTERM by pid (SIGKILL after 2 s), then the socket and pid files are
 *   removed: a leftover socket is a bug.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { Subprocess } from "bun";
import type { WgChanges, WgDeviceState, WgDeviceWant } from "../encap/wireguard.ts";
import { describeChanges, diffWireguard, isNoChange, WG_NAME } from "../encap/wireguard.ts";
import type { NetHost } from "./host.ts";
import { pidAlive, stopPid } from "./process.ts";
import { uapiGet, uapiSet } from "./wg-uapi-socket.ts";
import type { WgDeviceOptions, WgEvent, WireguardDevice } from "./wireguard.ts";

export const WG_SOCKET_DIR = "/var/run/wireguard";
const MIN_DELAY_MS = 100;
const MAX_DELAY_MS = 5000;
const HEALTHY_AFTER_MS = 30_000;
const READY_TIMEOUT_MS = 5000;
const PRIVATE_SOCKET_SCRIPT =
  'mkdir -p /var/run/wireguard && mount --bind "$0" /var/run/wireguard && exec wireguard-go -f "$1"';

/** Bring the link to its address (the only one), MTU and up. */
export function configureLink(host: NetHost, name: string, address: string, mtu: number): void {
  const link = host.link(name);
  if (!link) throw new Error(`link ${name} is missing`);
  if (link.mtu !== mtu) host.setLink(link.index, { mtu });
  const addrs = host.addrs(link.index).map((a) => a.cidr);
  for (const a of addrs) if (a !== address) host.delAddr(link.index, a);
  if (!addrs.includes(address)) host.addAddr(link.index, address);
  if (!link.up) host.setLink(link.index, { up: true });
}

function daemonFiles(socketDir: string | undefined, name: string): { socketPath: string; pidPath: string } {
  const dir = socketDir ?? WG_SOCKET_DIR;
  return { socketPath: `${dir}/${name}.sock`, pidPath: `${dir}/${name}.pid` };
}

/** Is `pid` a running `wireguard-go ... <name>`? (A pid file may outlive its process.) */
function isWireguardGo(pid: number, name: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return argv[0]?.endsWith("wireguard-go") === true && argv.includes(name);
  } catch {
    return false;
  }
}

/** The wireguard-go its pid file names, if it runs: its pid (0 when none does) and the file. */
export function runningWireguardGo(o: { socketDir?: string; name?: string } = {}): { pid: number; pidPath: string } {
  const { pidPath } = daemonFiles(o.socketDir, o.name ?? WG_NAME);
  const pid = existsSync(pidPath) ? Number(readFileSync(pidPath, "utf8").trim()) : 0;
  return { pid: isWireguardGo(pid, o.name ?? WG_NAME) ? pid : 0, pidPath };
}

/**
 * End a wireguard-go that nobody supervises any more (its agent was killed and will not
 * come back: `lab down`, uninstall), found by its pid file, and remove its files.
 * True if one was running.
 */
export async function stopLeftoverWireguardGo(o: { socketDir?: string; name?: string } = {}): Promise<boolean> {
  const { socketPath } = daemonFiles(o.socketDir, o.name ?? WG_NAME);
  const { pid, pidPath } = runningWireguardGo(o);
  const running = pid > 0;
  if (running) await stopPid(pid);
  rmSync(socketPath, { force: true });
  rmSync(pidPath, { force: true });
  return running;
}

type State = "idle" | "running" | "restarting" | "stopped";

export class WireguardGo implements WireguardDevice {
  readonly impl = "userspace" as const;
  readonly name: string;
  readonly socketPath: string;
  readonly pidPath: string;
  private state: State = "idle";
  private proc?: Subprocess;
  private pid = 0;
  private want?: WgDeviceWant;
  private restarts = 0;
  private delayMs = MIN_DELAY_MS;
  private restartTimer?: ReturnType<typeof setTimeout>;
  private adoptedWatch?: ReturnType<typeof setInterval>;
  private queue: Promise<unknown> = Promise.resolve();
  private lastOutput: string[] = [];

  constructor(private o: WgDeviceOptions) {
    this.name = o.name ?? WG_NAME;
    ({ socketPath: this.socketPath, pidPath: this.pidPath } = daemonFiles(o.socketDir, this.name));
  }

  /** The pid of the running wireguard-go, 0 when none runs. */
  get processId(): number {
    return this.state === "running" ? this.pid : 0;
  }

  start(): Promise<void> {
    return this.serial(async () => {
      mkdirSync(this.o.socketDir ?? WG_SOCKET_DIR, { recursive: true, mode: 0o700 });
      if (await this.adopt()) return;
      try {
        await this.launch();
      } catch (e) {
        this.state = "stopped";
        if (this.pid && pidAlive(this.pid)) await stopPid(this.pid);
        this.removeFiles();
        throw e;
      }
    });
  }

  sync(want: WgDeviceWant): Promise<WgChanges> {
    return this.serial(async () => {
      this.want = want;
      if (this.state !== "running") return { peers: [] };
      return this.apply(want);
    });
  }

  show(): Promise<WgDeviceState> {
    return uapiGet(this.socketPath);
  }

  async stop(): Promise<void> {
    this.state = "stopped";
    this.clearTimers();
    await this.serial(async () => {
      if (this.pid) await stopPid(this.pid);
      if (this.proc) await this.proc.exited;
      this.removeFiles();
    });
  }

  /** Stop supervising and leave wireguard-go running (a later agent adopts it). */
  detach(): void {
    this.state = "stopped";
    this.clearTimers();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private emit(e: WgEvent): void {
    this.o.onEvent?.(e);
  }

  private async apply(want: WgDeviceWant): Promise<WgChanges> {
    configureLink(this.o.host, this.name, this.o.address, this.o.mtu);
    const changes = diffWireguard(want, await uapiGet(this.socketPath));
    if (isNoChange(changes)) return changes;
    await uapiSet(this.socketPath, changes);
    this.emit({ type: "configured", changes: describeChanges(changes) });
    return changes;
  }

  private argv(): string[] {
    const daemon = this.o.socketDir
      ? ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", PRIVATE_SOCKET_SCRIPT]
      : ["wireguard-go", "-f"];
    const args = this.o.socketDir ? [this.o.socketDir, this.name] : [this.name];
    return [...(this.o.netns ? ["nsenter", `--net=${this.o.netns}`] : []), ...daemon, ...args];
  }

  private async launch(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    this.lastOutput = [];
    const proc = Bun.spawn(this.argv(), {
      env: {
        PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        WG_PROCESS_FOREGROUND: "1",
        LOG_LEVEL: "error",
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.proc = proc;
    this.pid = proc.pid;
    writeFileSync(this.pidPath, `${proc.pid}\n`);
    this.pump(proc.stdout);
    this.pump(proc.stderr);
    const startedAt = Date.now();
    proc.exited.then(() => {
      const signal = proc.signalCode === null ? null : String(proc.signalCode);
      this.exited(proc.pid, proc.exitCode, signal, startedAt);
    });
    await this.waitReady(() => proc.exitCode === null && proc.signalCode === null);
    await this.becomeRunning();
    this.emit({ type: "started", impl: "userspace", pid: proc.pid, restarts: this.restarts });
  }

  private async becomeRunning(): Promise<void> {
    configureLink(this.o.host, this.name, this.o.address, this.o.mtu);
    this.state = "running";
    if (this.want) await this.apply(this.want);
  }

  private async waitReady(alive: () => boolean): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!alive()) {
        const said = this.lastOutput.slice(-3).join("; ");
        throw new Error(`wireguard-go ${this.name} exited while starting${said ? `: ${said}` : ""}`);
      }
      if (existsSync(this.socketPath) && this.o.host.link(this.name)) {
        try {
          await uapiGet(this.socketPath);
          return;
        } catch {
          /* not listening yet */
        }
      }
      await Bun.sleep(20);
    }
    throw new Error(`wireguard-go ${this.name} did not come up within ${READY_TIMEOUT_MS} ms`);
  }

  /** Take over a wireguard-go that a previous agent started, if it is ours and healthy. */
  private async adopt(): Promise<boolean> {
    const { pid } = runningWireguardGo({ socketDir: this.o.socketDir, name: this.name });
    if (!pid || !this.inOurNetns(pid)) return false;
    try {
      await uapiGet(this.socketPath);
    } catch {
      await stopPid(pid);
      return false;
    }
    this.pid = pid;
    await this.becomeRunning();
    const startedAt = Date.now();
    this.adoptedWatch = setInterval(() => {
      if (!pidAlive(pid)) this.exited(pid, null, null, startedAt);
    }, 250);
    this.emit({ type: "adopted", pid });
    return true;
  }

  /** Does `pid` run in the namespace this device is for (a lab node's, or ours)? */
  private inOurNetns(pid: number): boolean {
    try {
      return statSync(`/proc/${pid}/ns/net`).ino === statSync(this.o.netns ?? "/proc/self/ns/net").ino;
    } catch {
      return false;
    }
  }

  private exited(pid: number, code: number | null, signal: string | null, startedAt: number): void {
    if (pid !== this.pid || (this.state !== "running" && this.state !== "restarting")) return;
    if (this.adoptedWatch) clearInterval(this.adoptedWatch);
    this.adoptedWatch = undefined;
    this.state = "restarting";
    if (Date.now() - startedAt >= HEALTHY_AFTER_MS) this.delayMs = MIN_DELAY_MS;
    const restartInMs = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, MAX_DELAY_MS);
    this.emit({ type: "exited", pid, code, signal, restartInMs });
    if (this.restartTimer) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.restart();
    }, restartInMs);
  }

  private restart(): Promise<void> {
    return this.serial(async () => {
      if (this.state !== "restarting") return;
      this.restarts++;
      try {
        await this.launch();
      } catch (e) {
        this.emit({ type: "error", message: `restart ${this.restarts}: ${(e as Error).message}` });
        // The exit of this attempt schedules the next one.
        if (this.pid && pidAlive(this.pid)) process.kill(this.pid, "SIGKILL");
      }
    });
  }

  private clearTimers(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.adoptedWatch) clearInterval(this.adoptedWatch);
    this.restartTimer = undefined;
    this.adoptedWatch = undefined;
  }

  private removeFiles(): void {
    rmSync(this.socketPath, { force: true });
    rmSync(this.pidPath, { force: true });
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines.filter((l) => l.trim())) {
        this.lastOutput = [...this.lastOutput.slice(-9), line];
        this.emit({ type: "log", line });
      }
    }
  }
}
