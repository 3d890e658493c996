/**
 * WireGuard keys: known answers (the public key checked against `wg pubkey`, the PSK
 * against an independent HKDF in Python's hmac, both once, then fixed here), the PSK's
 * symmetry, and the key file kept in the data dir.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  base64ToHex,
  clamp,
  generatePrivateKey,
  hexToBase64,
  isWgKey,
  keyFromBase64,
  keyToBase64,
  pairPsk,
  publicKeyOf,
  WgKeyError,
} from "../../net/crypto/wg-keys.ts";
import { loadOrCreateWgKey, WG_KEY_FILE } from "../../net/host/wg-key-file.ts";

const SECRET = new Uint8Array(32).map((_, i) => i + 1);
const A_PRIVATE = "EBEREREREREREREREREREREREREREREREREREREREVE="; // clamp(0x11 x 32)
const A_PUBLIC = "e06Qm75//kTEZaIgA31gjuNYl9Me+XLwf3SJLLD3PxM=";
const B_PRIVATE = "ICIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiImI="; // clamp(0x22 x 32)
const B_PUBLIC = "D6poTtKIZ7l/Smot7l34zpdOdrcBjj8iocTPJnhXDyA=";
const AB_PSK = "BoBpqCkM3PpgBpuHWEBEYtsP/A19H9bm04CJj4oG2Yk=";

describe("wireguard keys", () => {
  test("clamping as wg genkey does", () => {
    expect(Buffer.from(clamp(new Uint8Array(32).fill(0xff))).toString("hex")).toBe(`f8${"ff".repeat(30)}7f`);
    expect(keyToBase64(clamp(new Uint8Array(32).fill(0x11)))).toBe(A_PRIVATE);
    const fresh = generatePrivateKey();
    expect(fresh[0]! & 7).toBe(0);
    expect(fresh[31]! & 0xc0).toBe(0x40);
    expect(() => clamp(new Uint8Array(31))).toThrow(WgKeyError);
  });

  test("public keys: the example of wg(8) and two fixed ones", () => {
    const wg8 = publicKeyOf(keyFromBase64("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="));
    expect(keyToBase64(wg8)).toBe("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
    expect(keyToBase64(publicKeyOf(keyFromBase64(A_PRIVATE)))).toBe(A_PUBLIC);
    expect(keyToBase64(publicKeyOf(keyFromBase64(B_PRIVATE)))).toBe(B_PUBLIC);
  });

  test("base64 and hex forms; malformed keys refused", () => {
    const hex = base64ToHex(A_PUBLIC);
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(hexToBase64(hex)).toBe(A_PUBLIC);
    expect(isWgKey(A_PUBLIC)).toBe(true);
    for (const bad of ["", "abc", A_PUBLIC.slice(1), `${A_PUBLIC}=`, A_PUBLIC.replace("=", "A")])
      expect(isWgKey(bad)).toBe(false);
    expect(() => hexToBase64("zz")).toThrow(WgKeyError);
  });

  test("the pre-shared key of a pair: a known answer, the same from both ends", () => {
    const a = keyFromBase64(A_PUBLIC);
    const b = keyFromBase64(B_PUBLIC);
    expect(keyToBase64(pairPsk(SECRET, a, b))).toBe(AB_PSK);
    expect(keyToBase64(pairPsk(SECRET, b, a))).toBe(AB_PSK);
  });

  test("the PSK depends on the secret and on the pair", () => {
    const a = keyFromBase64(A_PUBLIC);
    const b = keyFromBase64(B_PUBLIC);
    const c = publicKeyOf(generatePrivateKey());
    const other = new Uint8Array(32).fill(7);
    const psks = [pairPsk(SECRET, a, b), pairPsk(other, a, b), pairPsk(SECRET, a, c), pairPsk(SECRET, b, c)];
    expect(new Set(psks.map(keyToBase64)).size).toBe(4);
    expect(() => pairPsk(new Uint8Array(16), a, b)).toThrow(WgKeyError);
  });
});

describe("the key file in the data dir", () => {
  const withDir = (fn: (dir: string) => void) => {
    const dir = mkdtempSync(join(tmpdir(), "wgkey-"));
    try {
      fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test("made once with mode 0600, reused after", () =>
    withDir((dir) => {
      const first = loadOrCreateWgKey(join(dir, "data"));
      expect(first.created).toBe(true);
      expect(statSync(first.path).mode & 0o777).toBe(0o600);
      expect(readFileSync(first.path, "utf8")).toBe(`${first.privateKey}\n`);
      expect(keyToBase64(publicKeyOf(keyFromBase64(first.privateKey)))).toBe(first.publicKey);
      const again = loadOrCreateWgKey(join(dir, "data"));
      expect(again).toEqual({ ...first, created: false });
    }));

  test("a key written by wg genkey is used as it is; a widened mode is put back", () =>
    withDir((dir) => {
      const path = join(dir, WG_KEY_FILE);
      writeFileSync(path, `${A_PRIVATE}\n`);
      chmodSync(path, 0o644);
      expect(loadOrCreateWgKey(dir)).toMatchObject({ privateKey: A_PRIVATE, publicKey: A_PUBLIC, created: false });
      expect(statSync(path).mode & 0o777).toBe(0o600);
    }));

  test("a file that is no key is an error naming the path, not a new identity", () =>
    withDir((dir) => {
      const path = join(dir, WG_KEY_FILE);
      writeFileSync(path, "not a key\n", { mode: 0o600 });
      expect(() => loadOrCreateWgKey(dir)).toThrow(WgKeyError);
      expect(() => loadOrCreateWgKey(dir)).toThrow(path);
      expect(readFileSync(path, "utf8")).toBe("not a key\n");
    }));
});
