/**
 * The encrypted datapath's wiring in the agent (docs/datapath.md, "Encrypted datapath"):
 * with a password, VXLAN rides inside the WireGuard device `weave-wg`.
 *
 * - The node's key pair comes from `<data dir>/wireguard.key`; the public key goes in
 *   the node's mesh entry (the agent does that), the private key never into a log.
 * - `prepare` puts the fail-closed table in place before VXLAN points at any tunnel
 *   address, and deletes a `vxlan-6784` made for the plain datapath (its local address
 *   is the underlay's, which reconcileVxlan does not change).
 * - `start` opens the device (kernel WireGuard, else a supervised wireguard-go); until it
 *   is up the agent programs no VXLAN at all.
 * - `sync` brings the device's peers to the mesh's reachable peers (on every topology
 *   change and every 5 s) and keeps what the device reports, for /report and status.
 * - `check` (every 5 s) puts the fail-closed table back if it went.
 * - `stop` leaves the device running (wireguard-go is detached, a later agent adopts
 *   it), as the agent leaves the kernel's VXLAN datapath across a restart; the table
 *   stays too. `disableEncryption` is for an agent started without a password on a node
 *   that had it.
 */
import { type Generation, pairPassword } from "../crypto/rotation.ts";
import { VXLAN_NAME } from "../encap/vxlan.ts";
import {
  desiredWireguard,
  encryptedMtus,
  type EncryptedMtus,
  tunnelAddress,
  tunnelCidr,
  WG_NAME,
  WG_PORT,
  type WgDeviceState,
  type WgPeerState,
} from "../encap/wireguard.ts";
import type { NetHost } from "../host/host.ts";
import { applyFailClosed, failClosedInPlace, removeFailClosed, WG_NFT_TABLE } from "../host/wg-fail-closed.ts";
import { loadOrCreateWgKey } from "../host/wg-key-file.ts";
import { openWireguard, type WgEvent, type WgImpl, type WireguardDevice } from "../host/wireguard.ts";
import { stopLeftoverWireguardGo, WireguardGo } from "../host/wireguard-go.ts";

export type EncryptedOptions = {
  host: NetHost;
  dataDir: string;
  /** The password's stretched key (the mesh's PSK); wg-keys derives each pair's PSK from it under a label of its own. */
  clusterSecret: Uint8Array;
  /** While rotating: both passwords' keys and fingerprints, current first (each pair uses the one both ends hold). */
  generations?: Generation[];
  /** wireguard-go's socket directory (the lab: one per node); default its standard one. */
  socketDir?: string;
  log(msg: string): void;
};

export type EncryptedRemote = { name: string; ip: string; publicKey?: string; passwords?: string[] };

/** What /report says of the tunnel to one peer. */
export type TunnelInfo = {
  wireguard: WgImpl;
  device: string;
  /** Seconds since the last handshake; undefined: none yet. */
  handshakeAgoS?: number;
  rxBytes: number;
  txBytes: number;
  /** Why the peer has no tunnel (no key yet, ...). */
  skipped?: string;
};

/** The local address of `vxlan-6784`, from `ip -d -j link` (the host layer does not read it). */
function vxlanLocal(): string | undefined {
  const r = Bun.spawnSync(["ip", "-d", "-j", "link", "show", "dev", VXLAN_NAME], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) return undefined;
  try {
    const [l] = JSON.parse(r.stdout.toString()) as { linkinfo?: { info_data?: { local?: string } } }[];
    return l?.linkinfo?.info_data?.local;
  } catch {
    return undefined;
  }
}

export class EncryptedDatapath {
  readonly publicKey: string;
  private readonly privateKey: string;
  private dev?: WireguardDevice;
  private underlay = "";
  /** The device is up: VXLAN may point at tunnel addresses. */
  ready = false;
  private state?: WgDeviceState;
  private keyOf = new Map<string, string>();
  private skipped = new Map<string, string>();
  private skippedSaid = "";
  private syncing?: Promise<void>;
  private again?: EncryptedRemote[];
  private againPrune = true;

  constructor(private o: EncryptedOptions) {
    const k = loadOrCreateWgKey(o.dataDir);
    this.privateKey = k.privateKey;
    this.publicKey = k.publicKey;
    o.log(`encryption: WireGuard public key ${k.publicKey} (${k.created ? "new, " : ""}private key in ${k.path})`);
  }

  get impl(): WgImpl | undefined {
    return this.dev?.impl;
  }

  /** MTUs: the overlay's (bridge, VXLAN, pods) and weave-wg's. */
  static mtus(underlay: number, set?: number): EncryptedMtus {
    return set !== undefined ? encryptedMtus({ overlay: set }) : encryptedMtus({ underlay });
  }

  /** Before any VXLAN entry points at a tunnel address (synchronous, in the agent's start). */
  prepare(underlay: string): void {
    this.underlay = underlay;
    applyFailClosed();
    this.o.log(`encryption: table inet ${WG_NFT_TABLE} drops VXLAN (UDP 6784) outside ${WG_NAME}`);
    const local = vxlanLocal();
    const want = tunnelAddress(underlay);
    if (local !== undefined && local !== want) {
      this.o.host.delLink(VXLAN_NAME);
      this.o.log(`encryption: deleted ${VXLAN_NAME} (local ${local}); it is made again with local ${want}`);
    }
  }

  /** Open and start the device; resolves once VXLAN may use it. */
  async start(mtu: number): Promise<void> {
    this.dev = openWireguard({
      host: this.o.host,
      address: tunnelCidr(this.underlay),
      mtu,
      socketDir: this.o.socketDir,
      onEvent: (e) => this.event(e),
    });
    await this.dev.start();
    this.ready = true;
    this.o.log(
      `encryption: ${WG_NAME} ${tunnelCidr(this.underlay)} mtu ${mtu} up (${this.dev.impl === "kernel" ? "kernel WireGuard" : "wireguard-go, userspace"}), UDP ${WG_PORT}`,
    );
  }

  private event(e: WgEvent): void {
    const say = (m: string) => this.o.log(`wireguard: ${m}`);
    if (e.type === "started")
      say(`${e.impl === "kernel" ? "kernel device" : `wireguard-go started (pid ${e.pid})`}, restarts ${e.restarts}`);
    else if (e.type === "adopted") say(`adopted the running wireguard-go (pid ${e.pid})`);
    else if (e.type === "configured") for (const c of e.changes) say(c);
    else if (e.type === "exited")
      say(
        `wireguard-go (pid ${e.pid}) exited (${e.signal ?? `code ${e.code}`}); starting it again in ${e.restartInMs} ms; VXLAN is dropped meanwhile`,
      );
    else if (e.type === "error") say(`error: ${e.message}`);
    else say(`wireguard-go: ${e.line}`);
  }

  /**
   * Bring the device's peers to `remotes`; folds calls that come while one runs into one
   * more. Until `prune` (the agent has heard from the mesh, as for VXLAN), peers the
   * device has and `remotes` lacks are kept: a restarted agent cuts no tunnel's session.
   */
  sync(remotes: EncryptedRemote[], prune = true): Promise<void> {
    if (this.syncing) {
      this.again = remotes;
      this.againPrune = prune;
      return this.syncing;
    }
    this.syncing = this.syncOnce(remotes, prune).finally(() => {
      this.syncing = undefined;
      const next = this.again;
      this.again = undefined;
      if (next) void this.sync(next, this.againPrune);
    });
    return this.syncing;
  }

  private async syncOnce(remotes: EncryptedRemote[], prune: boolean): Promise<void> {
    if (!this.dev || !this.ready) return;
    try {
      const { want, skipped } = desiredWireguard(
        {
          privateKey: this.privateKey,
          clusterSecret: this.o.clusterSecret,
          ...(this.o.generations && this.o.generations.length > 1 ? { generations: this.o.generations } : {}),
          underlay: this.underlay,
        },
        remotes,
      );
      this.sayPairPasswords(remotes);
      this.keyOf = new Map(remotes.filter((r) => r.publicKey).map((r) => [r.name, r.publicKey!]));
      this.skipped = new Map(skipped.map((s) => [s.name, s.reason]));
      const said = skipped.map((s) => `${s.name}: ${s.reason}`).join("; ");
      if (said !== this.skippedSaid && said) this.o.log(`wireguard: no tunnel to ${said} (its traffic is dropped)`);
      this.skippedSaid = said;
      if (!prune) {
        const have = await this.dev.show();
        for (const p of have.peers)
          if (!want.peers.some((w) => w.publicKey === p.publicKey))
            want.peers.push({
              publicKey: p.publicKey,
              presharedKey: p.presharedKey,
              endpoint: p.endpoint,
              allowedIps: p.allowedIps,
              keepalive: p.keepalive,
            });
      }
      await this.dev.sync(want);
      this.state = await this.dev.show();
    } catch (e) {
      this.o.log(`wireguard: ${(e as Error).message}`);
    }
  }

  private pairSaid = new Map<string, string>();

  /** While rotating: a line when a pair's PSK moves to another password (both ends do the same). */
  private sayPairPasswords(remotes: EncryptedRemote[]): void {
    const g = this.o.generations;
    if (!g || g.length < 2) return;
    const ours = g.map((x) => x.fingerprint);
    for (const r of remotes) {
      const f = pairPassword(ours, r.passwords);
      const label =
        f === undefined ? "none in common" : ours.indexOf(f) === 1 ? "the next password" : "the current password";
      const before = this.pairSaid.get(r.name);
      if (before !== label) this.o.log(`wireguard: pair key with ${r.name} from ${label}`);
      this.pairSaid.set(r.name, label);
    }
  }

  /** Every reconcile: the fail-closed table must be there. */
  check(): void {
    if (failClosedInPlace()) return;
    applyFailClosed();
    this.o.log(`encryption: table inet ${WG_NFT_TABLE} was missing; put back`);
  }

  /** The tunnel to the peer of this name, as the device last reported it. */
  tunnel(peer: string | undefined): TunnelInfo | undefined {
    if (!this.dev || !peer) return undefined;
    const key = this.keyOf.get(peer);
    const p: WgPeerState | undefined = key ? this.state?.peers.find((x) => x.publicKey === key) : undefined;
    const now = Math.floor(Date.now() / 1000);
    return {
      wireguard: this.dev.impl,
      device: WG_NAME,
      handshakeAgoS: p?.lastHandshakeSec ? Math.max(0, now - p.lastHandshakeSec) : undefined,
      rxBytes: p?.rxBytes ?? 0,
      txBytes: p?.txBytes ?? 0,
      ...(this.skipped.has(peer) ? { skipped: this.skipped.get(peer) } : {}),
    };
  }

  /** The agent stops: the device goes on carrying traffic (a later agent adopts it). */
  stop(): void {
    if (this.dev instanceof WireguardGo) this.dev.detach();
  }
}

/**
 * An agent without a password on a node whose earlier agent had one: take the encrypted
 * datapath down (wireguard-go, weave-wg, the table) and a VXLAN device made with a tunnel
 * address. Nothing happens where the table is not there.
 */
export async function disableEncryption(host: NetHost, socketDir: string | undefined, log: (m: string) => void) {
  const r = Bun.spawnSync(["nft", "list", "table", "inet", WG_NFT_TABLE], { stdout: "ignore", stderr: "ignore" });
  if (r.exitCode !== 0) return;
  await stopLeftoverWireguardGo({ socketDir });
  host.delLink(WG_NAME);
  // 240.0.0.0/5: a tunnel address (net/encap/wireguard.ts)
  const local = vxlanLocal();
  if (local !== undefined && (Number(local.split(".")[0]) & 0xf8) === 240) host.delLink(VXLAN_NAME);
  removeFailClosed();
  log(`encryption: off (no password); removed ${WG_NAME} and table inet ${WG_NFT_TABLE} of an earlier start`);
}
