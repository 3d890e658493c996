/**
 * WireGuard keys (pure): a node's X25519 key pair and the pre-shared key of a pair of
 * nodes.
 *
 * - Keys are raw 32-byte X25519 values, written as WireGuard writes them: standard
 *   base64 (44 characters) in files and wg(8), hex on the userspace UAPI socket. A
 *   private key is 32 random bytes clamped as `wg genkey` does (RFC 7748: the low 3 bits
 *   and the top bit cleared, bit 254 set), so our key files and wg's are the same.
 * - The pre-shared key of a pair is HKDF-SHA256 of the cluster secret (the password's
 *   stretched key: scrypt, done once by the agent) with both public keys in sorted byte
 *   order in the info, so both ends derive the same 32 bytes without talking, every pair
 *   gets its own, and a public key that leaks (it travels in the gossip) is worthless to
 *   anyone without the password. WireGuard mixes the PSK into its handshake (IKpsk2):
 *   a node that holds a peer's public key but derived another PSK completes no handshake.
 *
 * node:crypto does the X25519 arithmetic; raw keys are wrapped in the fixed PKCS#8 and
 * SPKI headers of an X25519 key (RFC 8410), as net/crypto/suite.ts does for Noise.
 */
import { createPrivateKey, createPublicKey, hkdfSync, randomBytes } from "node:crypto";

export const WG_KEY_LEN = 32;
/** Domain separation from every other use of the cluster secret (the mesh's Noise PSK). */
const PSK_LABEL = "weave wireguard pair psk v1";

const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");

export class WgKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WgKeyError";
  }
}

/** WireGuard's clamping of a private key, as `wg genkey` applies it. */
export function clamp(raw: Uint8Array): Uint8Array {
  if (raw.length !== WG_KEY_LEN) throw new WgKeyError(`a private key has ${WG_KEY_LEN} bytes, not ${raw.length}`);
  const k = new Uint8Array(raw);
  k[0]! &= 248;
  k[31] = (k[31]! & 127) | 64;
  return k;
}

/** A fresh private key, like `wg genkey` (raw bytes). */
export function generatePrivateKey(): Uint8Array {
  return clamp(randomBytes(WG_KEY_LEN));
}

/** The public key of a private key, like `wg pubkey` (raw bytes). */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  if (privateKey.length !== WG_KEY_LEN) throw new WgKeyError(`a private key has ${WG_KEY_LEN} bytes`);
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, privateKey]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.length - WG_KEY_LEN));
}

/** WireGuard's text form of a key: base64 of the 32 bytes. */
export function keyToBase64(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

/** Parse a base64 key; throws WgKeyError unless it is exactly 32 bytes in canonical base64. */
export function keyFromBase64(text: string): Uint8Array {
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== WG_KEY_LEN || bytes.toString("base64") !== text)
    throw new WgKeyError(`not a WireGuard key (${WG_KEY_LEN} bytes in base64, 44 characters)`);
  return new Uint8Array(bytes);
}

export function isWgKey(text: string): boolean {
  try {
    keyFromBase64(text);
    return true;
  } catch {
    return false;
  }
}

/** The UAPI socket's form of a key. */
export function base64ToHex(key: string): string {
  return Buffer.from(keyFromBase64(key)).toString("hex");
}

export function hexToBase64(hex: string): string {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new WgKeyError("not a WireGuard key in hex (64 lower-case digits)");
  return Buffer.from(hex, "hex").toString("base64");
}

/**
 * The pre-shared key of the pair (a, b): the same whichever end computes it.
 * `clusterSecret` is the password's stretched 32-byte key; a, b are raw public keys.
 */
export function pairPsk(clusterSecret: Uint8Array, a: Uint8Array, b: Uint8Array): Uint8Array {
  if (clusterSecret.length !== WG_KEY_LEN)
    throw new WgKeyError(`the cluster secret has ${WG_KEY_LEN} bytes, not ${clusterSecret.length}`);
  if (a.length !== WG_KEY_LEN || b.length !== WG_KEY_LEN) throw new WgKeyError("public keys have 32 bytes");
  const [low, high] = Buffer.compare(Buffer.from(a), Buffer.from(b)) <= 0 ? [a, b] : [b, a];
  const info = Buffer.concat([Buffer.from(low), Buffer.from(high)]);
  return new Uint8Array(hkdfSync("sha256", clusterSecret, PSK_LABEL, info, WG_KEY_LEN));
}
