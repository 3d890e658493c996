/**
 * The Noise suite 25519_AESGCM_SHA256 over node:crypto, and nothing hand-made: X25519
 * (RFC 7748) for DH, AES-256-GCM for the AEAD, SHA-256 for the hash, and Noise's HKDF,
 * which is RFC 5869 HKDF with the chaining key as salt and an empty info.
 *
 * Bun has no ChaCha20-Poly1305 in node:crypto, and AES-GCM there runs on AES-NI, so
 * AESGCM is both the native and the fast choice. Keys cross this module as raw 32-byte
 * arrays; node:crypto wants DER, so they are wrapped in the fixed PKCS#8 / SPKI headers
 * of an X25519 key (RFC 8410).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from "node:crypto";

export const DHLEN = 32;
export const HASHLEN = 32;
export const TAGLEN = 16;
export const SUITE = "25519_AESGCM_SHA256";

const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");

export type KeyPair = { publicKey: Uint8Array; privateKey: Uint8Array; key: KeyObject };

/** A key pair from a raw private key (the test vectors' fixed keys), or a fresh one. */
export function keyPair(privateKey?: Uint8Array): KeyPair {
  const key = privateKey
    ? createPrivateKey({ key: Buffer.concat([PKCS8_X25519, privateKey]), format: "der", type: "pkcs8" })
    : generateKeyPairSync("x25519").privateKey;
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  const pkcs8 = key.export({ format: "der", type: "pkcs8" });
  return {
    publicKey: new Uint8Array(spki.subarray(SPKI_X25519.length)),
    privateKey: new Uint8Array(pkcs8.subarray(PKCS8_X25519.length)),
    key,
  };
}

export class CryptoError extends Error {}

/** X25519. A low-order public key (an all-zero shared secret) is refused, as OpenSSL does. */
export function dh(ours: KeyPair, theirPublic: Uint8Array): Uint8Array {
  if (theirPublic.length !== DHLEN) throw new CryptoError(`public key of ${theirPublic.length} bytes, not ${DHLEN}`);
  const publicKey = createPublicKey({ key: Buffer.concat([SPKI_X25519, theirPublic]), format: "der", type: "spki" });
  try {
    return new Uint8Array(diffieHellman({ privateKey: ours.key, publicKey }));
  } catch {
    throw new CryptoError("the peer's public key is not usable for X25519 (a low-order point)");
  }
}

/**
 * Noise's AESGCM nonce: 32 zero bits, then the counter as a 64-bit big-endian number
 * (kept below 2^53 here, which no connection comes near).
 */
function nonceOf(n: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(Math.floor(n / 2 ** 32), 4);
  iv.writeUInt32BE(n >>> 0, 8);
  return iv;
}

/**
 * AES-256-GCM: ciphertext with the 16-byte tag appended, after `headroom` bytes left
 * for the caller (a record's length), so a frame is copied once on its way out.
 */
export function seal(k: Uint8Array, n: number, ad: Uint8Array, plaintext: Uint8Array, headroom = 0): Uint8Array {
  const cipher = createCipheriv("aes-256-gcm", k, nonceOf(n));
  cipher.setAAD(ad);
  const body = cipher.update(plaintext);
  cipher.final();
  const out = new Uint8Array(headroom + body.length + TAGLEN);
  out.set(body, headroom);
  out.set(cipher.getAuthTag(), headroom + body.length);
  return out;
}

/** Opens what `seal` made; throws CryptoError when the tag does not match. */
export function open(k: Uint8Array, n: number, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length < TAGLEN) throw new CryptoError(`sealed message of ${ciphertext.length} bytes has no tag`);
  const tagAt = ciphertext.length - TAGLEN;
  const decipher = createDecipheriv("aes-256-gcm", k, nonceOf(n));
  decipher.setAAD(ad);
  decipher.setAuthTag(ciphertext.subarray(tagAt));
  const body = decipher.update(ciphertext.subarray(0, tagAt));
  try {
    decipher.final();
  } catch {
    throw new CryptoError("authentication failed");
  }
  return new Uint8Array(body.buffer, body.byteOffset, body.length);
}

export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Noise's HKDF(chaining key, input key material, n outputs of HASHLEN bytes). */
export function hkdf(ck: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const okm = new Uint8Array(hkdfSync("sha256", ikm, ck, new Uint8Array(0), HASHLEN * outputs));
  return Array.from({ length: outputs }, (_, i) => okm.slice(i * HASHLEN, (i + 1) * HASHLEN));
}
