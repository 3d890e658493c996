/**
 * WireGuard's cross-platform configuration protocol (the "UAPI" that wireguard-go serves
 * on /var/run/wireguard/<ifname>.sock), as text in and text out (pure). The socket
 * itself is in net/host/wireguard-go.ts.
 *
 * A request is `get=1\n\n`, or `set=1\n` + `key=value` lines + a blank line; the answer
 * ends with `errno=N\n\n` (0: done). Keys are hex on this socket. Device keys come
 * first; `public_key=` opens a peer section, and every peer key after it belongs to that
 * peer. wireguard-go 0.0.20220316 (Debian's) has no `allowed_ip=-x` removal, so a
 * changed list is sent whole after `replace_allowed_ips=true`.
 *
 * The set text carries the private and pre-shared keys: it goes to the socket and
 * nowhere else (describeChanges in wireguard.ts is what logs may show).
 */
import { base64ToHex, hexToBase64 } from "../crypto/wg-keys.ts";
import type { WgChanges, WgDeviceState, WgPeerState, WgPeerWant } from "./wireguard.ts";

export const UAPI_GET = "get=1\n\n";

export class UapiError extends Error {
  constructor(
    readonly op: "get" | "set",
    readonly errno: number,
    detail?: string,
  ) {
    super(`wireguard UAPI ${op}: errno ${errno}${detail ? ` (${detail})` : ""}`);
    this.name = "UapiError";
  }
}

/** The errno of a complete answer, or undefined while it is not complete yet. */
export function answerErrno(text: string): number | undefined {
  const m = /(?:^|\n)errno=(-?\d+)\n\n$/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Parse a `get=1` answer (errno line included or not). */
export function parseGet(text: string): WgDeviceState {
  const state: WgDeviceState = { peers: [] };
  let peer: WgPeerState | undefined;
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === "public_key") {
      peer = {
        publicKey: hexToBase64(value),
        presharedKey: "",
        endpoint: "",
        allowedIps: [],
        keepalive: 0,
        lastHandshakeSec: 0,
        rxBytes: 0,
        txBytes: 0,
      };
      state.peers.push(peer);
    } else if (!peer) {
      if (key === "private_key") state.privateKey = hexToBase64(value);
      else if (key === "listen_port") state.listenPort = Number(value);
    } else if (key === "preshared_key") peer.presharedKey = hexToBase64(value);
    else if (key === "endpoint") peer.endpoint = value;
    else if (key === "allowed_ip") peer.allowedIps.push(value);
    else if (key === "persistent_keepalive_interval") peer.keepalive = Number(value);
    else if (key === "last_handshake_time_sec") peer.lastHandshakeSec = Number(value);
    else if (key === "rx_bytes") peer.rxBytes = Number(value);
    else if (key === "tx_bytes") peer.txBytes = Number(value);
  }
  return state;
}

function peerLines(p: Partial<WgPeerWant> & { publicKey: string }, replaceAllowedIps: boolean): string[] {
  const lines = [`public_key=${base64ToHex(p.publicKey)}`];
  if (p.presharedKey !== undefined) lines.push(`preshared_key=${base64ToHex(p.presharedKey)}`);
  if (p.endpoint !== undefined) lines.push(`endpoint=${p.endpoint}`);
  if (p.keepalive !== undefined) lines.push(`persistent_keepalive_interval=${p.keepalive}`);
  if (p.allowedIps !== undefined) {
    if (replaceAllowedIps) lines.push("replace_allowed_ips=true");
    for (const ip of p.allowedIps) lines.push(`allowed_ip=${ip}`);
  }
  return lines;
}

/** The `set=1` request for these changes; keys inside: for the socket only. */
export function renderSet(c: WgChanges): string {
  const lines = ["set=1"];
  if (c.privateKey !== undefined) lines.push(`private_key=${base64ToHex(c.privateKey)}`);
  if (c.listenPort !== undefined) lines.push(`listen_port=${c.listenPort}`);
  for (const p of c.peers) {
    if (p.op === "remove") lines.push(`public_key=${base64ToHex(p.publicKey)}`, "remove=true");
    else if (p.op === "add") lines.push(...peerLines(p.peer, true));
    else lines.push(...peerLines(p, true));
  }
  return `${lines.join("\n")}\n\n`;
}
