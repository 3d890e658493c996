/**
 * The encrypted datapath of one node as desired state (pure): the WireGuard device
 * `weave-wg` and its peers, and the diff against what the device reports (the UAPI
 * `get=1` dump, net/encap/wireguard-uapi.ts) as the changes `set=1` applies. Like
 * vxlan.ts: desired state -> diff -> apply; net/host/wireguard.ts applies.
 *
 * VXLAN rides inside WireGuard (docs/datapath.md, "Encrypted datapath"):
 * - Each node has a **tunnel address** on `weave-wg`, derived from its underlay
 *   address alone: 240.0.0.0/5 (class E, reserved, never routed anywhere, so it can
 *   clash with no real network, cloud metadata or VPN) plus the underlay's low 27 bits:
 *   198.18.0.11 -> 246.18.0.11, 10.1.2.3 -> 242.1.2.3, 192.168.1.5 -> 240.168.1.5.
 *   Every node computes every node's tunnel address from what the gossip already
 *   carries, with no allocation and no coordination; two nodes collide only if their
 *   underlay addresses differ in the top 5 bits alone, which the plan detects and
 *   reports (both are left out: fail closed, never misrouted).
 * - The address is put on `weave-wg` with the /5, so one connected route sends the
 *   whole tunnel range into WireGuard (no per-peer routes); the /5 leaves out
 *   248.0.0.0/5 and so the limited broadcast 255.255.255.255.
 * - The VXLAN device's local address and its FDB destinations are tunnel addresses
 *   (`throughTunnel`), so every VXLAN packet is routed into `weave-wg`; a peer's
 *   allowed IPs are its tunnel address /32, which is both where WireGuard sends a
 *   VXLAN packet and the only inner source it accepts from that peer.
 * - Endpoint: the peer's underlay address, port 6785 (Weave's 6783 is the mesh, 6784 is
 *   VXLAN and the local API; 6785 keeps the family together for firewall rules).
 * - Persistent keepalive 25 s (wg(8)'s value): an idle pair still handshakes every two
 *   minutes, so "last handshake" says whether a tunnel is alive (doctor, status) and a
 *   stateful firewall on the path keeps its state.
 * - MTU: WireGuard adds 60 bytes over IPv4 (outer IPv4 20, UDP 8, header 16, tag 16),
 *   VXLAN 50: `weave-wg` = underlay - 60, the overlay = underlay - 110.
 */
import { ipToNum, numToIp } from "../cidr.ts";
import { keyFromBase64, keyToBase64, pairPsk, publicKeyOf } from "../crypto/wg-keys.ts";
import { type Generation, pairPassword } from "../crypto/rotation.ts";
import type { Remote } from "./vxlan.ts";

export const WG_NAME = "weave-wg";
export const WG_PORT = 6785;
export const WG_KEEPALIVE_S = 25;
export const WG_OVERHEAD_BYTES = 60;
/** Outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8 (net/agent/mtu.ts has the same). */
const VXLAN_OVERHEAD_BYTES = 50;
export const TUNNEL_NET = "240.0.0.0/5";
const TUNNEL_PREFIX = 5;
const TUNNEL_BASE = ipToNum("240.0.0.0");
const TUNNEL_HOST_MASK = 2 ** (32 - TUNNEL_PREFIX) - 1;

// ---------------------------------------------------------------------------------------
// Addressing and MTU.

/** The node's address on `weave-wg`, from its underlay address. */
export function tunnelAddress(underlay: string): string {
  return numToIp((TUNNEL_BASE + (ipToNum(underlay) & TUNNEL_HOST_MASK)) >>> 0);
}

/** The address with the tunnel range's prefix, as it goes on `weave-wg`. */
export function tunnelCidr(underlay: string): string {
  return `${tunnelAddress(underlay)}/${TUNNEL_PREFIX}`;
}

/** VXLAN's remotes with their tunnel addresses as destinations: VXLAN inside WireGuard. */
export function throughTunnel(remotes: Remote[]): Remote[] {
  return remotes.map((r) => ({ ...r, ip: tunnelAddress(r.ip) }));
}

export type EncryptedMtus = { wireguard: number; overlay: number };

/** MTUs from the underlay's, or from an overlay MTU set by hand (WEAVE_MTU). */
export function encryptedMtus(o: { underlay: number } | { overlay: number }): EncryptedMtus {
  const overlay = "overlay" in o ? o.overlay : o.underlay - WG_OVERHEAD_BYTES - VXLAN_OVERHEAD_BYTES;
  return { wireguard: overlay + VXLAN_OVERHEAD_BYTES, overlay };
}

// ---------------------------------------------------------------------------------------
// Desired state.

/** Keys are base64 here, as in wg(8); the UAPI layer turns them into hex. */
export type WgPeerWant = {
  publicKey: string;
  presharedKey: string;
  endpoint: string;
  allowedIps: string[];
  keepalive: number;
};
export type WgDeviceWant = { privateKey: string; listenPort: number; peers: WgPeerWant[] };

/** What the device reports about itself; a subset of the UAPI dump. */
export type WgPeerState = WgPeerWant & { lastHandshakeSec: number; rxBytes: number; txBytes: number };
export type WgDeviceState = { privateKey?: string; publicKey?: string; listenPort?: number; peers: WgPeerState[] };

export type WgSelf = {
  /** base64, from the key file. */
  privateKey: string;
  /** The password's stretched key (32 bytes). */
  clusterSecret: Uint8Array;
  /**
   * While rotating, both passwords (current first, net/crypto/rotation.ts): each pair's
   * PSK then comes from the password the pair's two entries say both ends hold
   * (pairPassword), so both ends agree. Without it, `clusterSecret` for every pair.
   */
  generations?: Generation[];
  underlay: string;
  listenPort?: number;
};
/** A peer of the mesh that this node should reach; publicKey as gossiped (base64). */
export type WgRemote = { name: string; ip: string; publicKey?: string; port?: number; passwords?: string[] };
/** A remote left out of the device, and why: it gets no traffic at all. */
export type WgSkipped = { name: string; reason: string };

export function desiredWireguard(self: WgSelf, remotes: WgRemote[]): { want: WgDeviceWant; skipped: WgSkipped[] } {
  const selfPublic = publicKeyOf(keyFromBase64(self.privateKey));
  const selfTunnel = tunnelAddress(self.underlay);
  const skipped: WgSkipped[] = [];
  const sorted = [...remotes].sort((a, b) => a.name.localeCompare(b.name));
  const usable = sorted.filter((r) => {
    const reason = keyProblem(r.publicKey, keyToBase64(selfPublic));
    if (reason) skipped.push({ name: r.name, reason });
    return !reason;
  });
  const byTunnel = groupBy(usable, (r) => tunnelAddress(r.ip));
  const byKey = groupBy(usable, (r) => r.publicKey!);
  const peers: WgPeerWant[] = [];
  for (const r of usable) {
    const tunnel = tunnelAddress(r.ip);
    const sameTunnel = byTunnel.get(tunnel)!.filter((o) => o !== r);
    const sameKey = byKey.get(r.publicKey!)!.filter((o) => o !== r);
    if (tunnel === selfTunnel) {
      skipped.push({ name: r.name, reason: `its tunnel address ${tunnel} (from ${r.ip}) is this node's own` });
      continue;
    }
    if (sameTunnel.length) {
      const others = sameTunnel.map((o) => `${o.name} (${o.ip})`).join(", ");
      skipped.push({ name: r.name, reason: `its tunnel address ${tunnel} (from ${r.ip}) is also that of ${others}` });
      continue;
    }
    if (sameKey.length) {
      skipped.push({ name: r.name, reason: `its public key is also that of ${sameKey.map((o) => o.name).join(", ")}` });
      continue;
    }
    const secret = pairSecret(self, r);
    if (!secret) {
      skipped.push({
        name: r.name,
        reason: "it holds none of this node's passwords (rotate through both: give every node both first)",
      });
      continue;
    }
    const remotePublic = keyFromBase64(r.publicKey!);
    peers.push({
      publicKey: r.publicKey!,
      presharedKey: keyToBase64(pairPsk(secret, selfPublic, remotePublic)),
      endpoint: `${r.ip}:${r.port ?? WG_PORT}`,
      allowedIps: [`${tunnel}/32`],
      keepalive: WG_KEEPALIVE_S,
    });
  }
  return { want: { privateKey: self.privateKey, listenPort: self.listenPort ?? WG_PORT, peers }, skipped };
}

/** The stretched key a pair's PSK derives from: the pair's password (pairPassword) while rotating. */
export function pairSecret(self: WgSelf, r: WgRemote): Uint8Array | undefined {
  const g = self.generations;
  if (!g || g.length === 0) return self.clusterSecret;
  const f = pairPassword(
    g.map((x) => x.fingerprint),
    r.passwords,
  );
  return g.find((x) => x.fingerprint === f)?.psk;
}

function keyProblem(publicKey: string | undefined, selfPublic: string): string | undefined {
  if (publicKey === undefined) return "its WireGuard public key is not known yet";
  try {
    keyFromBase64(publicKey);
  } catch {
    return "its WireGuard public key is malformed";
  }
  if (publicKey === selfPublic) return "its public key is this node's own";
  return undefined;
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const t of items) m.set(key(t), [...(m.get(key(t)) ?? []), t]);
  return m;
}

// ---------------------------------------------------------------------------------------
// Diff.

export type WgPeerChange =
  | { op: "add"; peer: WgPeerWant }
  | { op: "remove"; publicKey: string }
  | {
      op: "update";
      publicKey: string;
      presharedKey?: string;
      endpoint?: string;
      keepalive?: number;
      /** The full new list, sent with replace_allowed_ips (0.0.20220316 cannot remove one). */
      allowedIps?: string[];
    };
export type WgChanges = { privateKey?: string; listenPort?: number; peers: WgPeerChange[] };

const sameSet = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** Pure: what `set=1` must change so that `have` becomes `want`. */
export function diffWireguard(want: WgDeviceWant, have: WgDeviceState): WgChanges {
  const changes: WgChanges = { peers: [] };
  if (have.privateKey !== want.privateKey) changes.privateKey = want.privateKey;
  if (have.listenPort !== want.listenPort) changes.listenPort = want.listenPort;
  const haveByKey = new Map(have.peers.map((p) => [p.publicKey, p]));
  const wantKeys = new Set(want.peers.map((p) => p.publicKey));
  for (const p of have.peers)
    if (!wantKeys.has(p.publicKey)) changes.peers.push({ op: "remove", publicKey: p.publicKey });
  for (const w of want.peers) {
    const h = haveByKey.get(w.publicKey);
    if (!h) {
      changes.peers.push({ op: "add", peer: w });
      continue;
    }
    const update: Extract<WgPeerChange, { op: "update" }> = { op: "update", publicKey: w.publicKey };
    if (h.presharedKey !== w.presharedKey) update.presharedKey = w.presharedKey;
    if (h.endpoint !== w.endpoint) update.endpoint = w.endpoint;
    if (h.keepalive !== w.keepalive) update.keepalive = w.keepalive;
    if (!sameSet(h.allowedIps, w.allowedIps)) update.allowedIps = w.allowedIps;
    if (Object.keys(update).length > 2) changes.peers.push(update);
  }
  return changes;
}

export function isNoChange(c: WgChanges): boolean {
  return c.privateKey === undefined && c.listenPort === undefined && c.peers.length === 0;
}

/** One line per change, for logs: public keys and endpoints, never a private or pre-shared key. */
export function describeChanges(c: WgChanges): string[] {
  const short = (k: string) => `${k.slice(0, 8)}…`;
  const lines: string[] = [];
  if (c.privateKey !== undefined) lines.push("set the private key");
  if (c.listenPort !== undefined) lines.push(`listen on UDP ${c.listenPort}`);
  for (const p of c.peers) {
    if (p.op === "remove") lines.push(`remove peer ${short(p.publicKey)}`);
    else if (p.op === "add")
      lines.push(`add peer ${short(p.peer.publicKey)} at ${p.peer.endpoint}, allowed ${p.peer.allowedIps.join(",")}`);
    else {
      const what = [
        p.presharedKey !== undefined ? "pre-shared key" : "",
        p.endpoint !== undefined ? `endpoint ${p.endpoint}` : "",
        p.keepalive !== undefined ? `keepalive ${p.keepalive} s` : "",
        p.allowedIps !== undefined ? `allowed ${p.allowedIps.join(",")}` : "",
      ].filter(Boolean);
      lines.push(`update peer ${short(p.publicKey)}: ${what.join(", ")}`);
    }
  }
  return lines;
}
