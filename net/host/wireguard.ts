/**
 * The WireGuard device `weave-wg` of a node, behind one interface with two
 * implementations: the kernel's WireGuard where the node has it, and Debian's userspace
 * `wireguard-go` (net/host/wireguard-go.ts) where it has not. `openWireguard` picks one
 * by trying to create a link of kind "wireguard".
 *
 * Both take desired state (net/encap/wireguard.ts) and bring the device to it: the link
 * (tunnel address, MTU, up) through the host layer, the keys and peers through the
 * device's own configuration interface. Keys never go on a command line or into a log:
 * wireguard-go gets them over its UAPI socket, the kernel path over `wg`'s stdin.
 *
 * THE KERNEL PATH HAS NOT RUN HERE: the machines this project is tested on have no
 * kernel WireGuard (docs/datapath.md says so too). It is kept small on purpose: the link
 * made with `ip link add NAME type wireguard`, configured with `wg syncconf NAME
 * /dev/stdin` (wg computes the difference itself, over the generic netlink family
 * "wireguard") and read with `wg show NAME dump`. A native generic netlink client can
 * replace it once there is a kernel to test it on.
 */
import { hexToBase64 } from "../crypto/wg-keys.ts";
import type { WgChanges, WgDeviceState, WgDeviceWant } from "../encap/wireguard.ts";
import { describeChanges, diffWireguard, isNoChange, WG_NAME } from "../encap/wireguard.ts";
import type { NetHost } from "./host.ts";
import { netnsPath } from "./netns.ts";
import { configureLink, WireguardGo } from "./wireguard-go.ts";

export { configureLink };

export type WgImpl = "kernel" | "userspace";

/** What the device tells its owner; `log` lines are wireguard-go's own output. */
export type WgEvent =
  | { type: "started"; impl: WgImpl; pid?: number; restarts: number }
  | { type: "adopted"; pid: number }
  | { type: "configured"; changes: string[] }
  | { type: "exited"; pid: number; code: number | null; signal: string | null; restartInMs: number }
  | { type: "error"; message: string }
  | { type: "log"; line: string };

export type WgDeviceOptions = {
  /** The host layer of the namespace the device lives in (link, address, MTU). */
  host: NetHost;
  /** That namespace's path, when it is not the caller's own (processes are started there). */
  netns?: string;
  name?: string;
  /** The tunnel address with its prefix (tunnelCidr). */
  address: string;
  /** The device's MTU: underlay - 60 (encryptedMtus). */
  mtu: number;
  /**
   * wireguard-go only: a directory of our own for its control socket, so that several
   * nodes of a lab on one machine can each have `weave-wg` (see wireguard-go.ts).
   * Without it the socket is wireguard-go's standard /var/run/wireguard/NAME.sock.
   */
  socketDir?: string;
  onEvent?: (e: WgEvent) => void;
};

export interface WireguardDevice {
  readonly impl: WgImpl;
  readonly name: string;
  /** Create the device (or adopt a running one) and bring its link up. */
  start(): Promise<void>;
  /** Bring the device to `want` and return what changed. Remembered: a restarted device gets it again. */
  sync(want: WgDeviceWant): Promise<WgChanges>;
  /** What the device reports: peers, handshakes, bytes. */
  show(): Promise<WgDeviceState>;
  /** Remove the device (and end its process, for wireguard-go). */
  stop(): Promise<void>;
}

/** The kernel's device if the kernel has WireGuard, else a supervised wireguard-go. */
export function openWireguard(o: WgDeviceOptions): WireguardDevice {
  return kernelHasWireguard(o.netns) ? new KernelWireguard(o) : new WireguardGo(o);
}

/** Does the kernel (in `netns`) make links of kind "wireguard"? Tried with a throw-away link. */
export function kernelHasWireguard(netns?: string): boolean {
  const probe = `wgprobe${process.pid % 100000}`;
  const added = run(netns, ["ip", "link", "add", probe, "type", "wireguard"]);
  if (added.code !== 0) return false;
  run(netns, ["ip", "link", "del", probe]);
  return true;
}

type Ran = { code: number; stdout: string; stderr: string };

function run(netns: string | undefined, cmd: string[], stdin?: string): Ran {
  const argv = netns ? ["nsenter", `--net=${netns.includes("/") ? netns : netnsPath(netns)}`, ...cmd] : cmd;
  const r = Bun.spawnSync(argv, {
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString().trim() };
}

/** wg(8)'s configuration file for `want` (base64 keys): for `wg syncconf`'s stdin only. */
export function wgConfig(want: WgDeviceWant): string {
  const lines = ["[Interface]", `PrivateKey = ${want.privateKey}`, `ListenPort = ${want.listenPort}`];
  for (const p of want.peers)
    lines.push(
      "",
      "[Peer]",
      `PublicKey = ${p.publicKey}`,
      `PresharedKey = ${p.presharedKey}`,
      `Endpoint = ${p.endpoint}`,
      `AllowedIPs = ${p.allowedIps.join(", ")}`,
      `PersistentKeepalive = ${p.keepalive}`,
    );
  return `${lines.join("\n")}\n`;
}

/** Parse `wg show NAME dump`: the interface line, then one tab-separated line per peer. */
export function parseWgDump(text: string): WgDeviceState {
  const [head, ...rest] = text.trim().split("\n");
  const [privateKey, publicKey, port] = (head ?? "").split("\t");
  const orUndefined = (v: string | undefined) => (v && v !== "(none)" ? v : undefined);
  return {
    privateKey: orUndefined(privateKey),
    publicKey: orUndefined(publicKey),
    listenPort: port ? Number(port) : undefined,
    peers: rest.map((line) => {
      const [pub, psk, endpoint, allowed, handshake, rx, tx, keepalive] = line.split("\t");
      return {
        publicKey: pub ?? "",
        presharedKey: orUndefined(psk) ?? hexToBase64("0".repeat(64)),
        endpoint: orUndefined(endpoint) ?? "",
        allowedIps: allowed && allowed !== "(none)" ? allowed.split(",") : [],
        keepalive: keepalive === "off" ? 0 : Number(keepalive ?? 0),
        lastHandshakeSec: Number(handshake ?? 0),
        rxBytes: Number(rx ?? 0),
        txBytes: Number(tx ?? 0),
      };
    }),
  };
}

/** UNTESTED HERE (no kernel WireGuard on these machines): see the file note. */
class KernelWireguard implements WireguardDevice {
  readonly impl = "kernel" as const;
  readonly name: string;

  constructor(private o: WgDeviceOptions) {
    this.name = o.name ?? WG_NAME;
  }

  private must(cmd: string[], stdin?: string): Ran {
    const r = run(this.o.netns, cmd, stdin);
    if (r.code !== 0) throw new Error(`${cmd.slice(0, 3).join(" ")}: ${r.stderr || `exit ${r.code}`}`);
    return r;
  }

  async start(): Promise<void> {
    const link = this.o.host.link(this.name);
    if (link?.kind !== "wireguard") {
      if (link) this.o.host.delLink(this.name);
      this.must(["ip", "link", "add", this.name, "type", "wireguard"]);
    }
    configureLink(this.o.host, this.name, this.o.address, this.o.mtu);
    this.o.onEvent?.({ type: "started", impl: "kernel", restarts: 0 });
  }

  async sync(want: WgDeviceWant): Promise<WgChanges> {
    configureLink(this.o.host, this.name, this.o.address, this.o.mtu);
    const changes = diffWireguard(want, await this.show());
    if (isNoChange(changes)) return changes;
    this.must(["wg", "syncconf", this.name, "/dev/stdin"], wgConfig(want));
    this.o.onEvent?.({ type: "configured", changes: describeChanges(changes) });
    return changes;
  }

  async show(): Promise<WgDeviceState> {
    return parseWgDump(this.must(["wg", "show", this.name, "dump"]).stdout);
  }

  async stop(): Promise<void> {
    this.o.host.delLink(this.name);
  }
}
