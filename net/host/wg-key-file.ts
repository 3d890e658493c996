/**
 * The node's WireGuard private key in `<data dir>/wireguard.key`: made once, reused
 * across restarts (the public key in every peer's configuration stays valid), mode 0600.
 *
 * The file holds what `wg genkey` prints (base64 and a newline), so `wg pubkey <
 * wireguard.key` works on it. It is created by writing a temporary file (0600) and
 * hard-linking it into place: link(2) fails if the name exists, so two agents racing on
 * one data dir end up with one key, and a crash never leaves a half-written key behind.
 * A file that is there but is no key is an error that names the path (never its
 * contents): replacing it silently would change the node's identity under its peers.
 */
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generatePrivateKey, keyFromBase64, keyToBase64, publicKeyOf, WgKeyError } from "../crypto/wg-keys.ts";

export const WG_KEY_FILE = "wireguard.key";

export type WgKeyPair = {
  /** base64, as in the key file; never log it. */
  privateKey: string;
  publicKey: string;
  /** True when this call made the file. */
  created: boolean;
  path: string;
};

function readKey(path: string): string {
  const text = readFileSync(path, "utf8").trim();
  try {
    keyFromBase64(text);
  } catch {
    throw new WgKeyError(
      `${path} holds no WireGuard private key; remove it and restart to make a new one (the node's public key changes)`,
    );
  }
  // Keep the key private even if someone widened the mode by hand.
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  return text;
}

/** The node's key pair, from `<dataDir>/wireguard.key`, which is created if missing. */
export function loadOrCreateWgKey(dataDir: string): WgKeyPair {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, WG_KEY_FILE);
  let created = false;
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${keyToBase64(generatePrivateKey())}\n`, { mode: 0o600, flag: "wx" });
    try {
      linkSync(tmp, path);
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    } finally {
      unlinkSync(tmp);
    }
  }
  const privateKey = readKey(path);
  const publicKey = keyToBase64(publicKeyOf(keyFromBase64(privateKey)));
  return { privateKey, publicKey, created, path };
}
