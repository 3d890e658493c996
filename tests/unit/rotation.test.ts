/**
 * Password rotation's rules (net/crypto/rotation.ts, docs/protocol.md "Rotation"): the
 * fingerprints, which password a pair of nodes keys its WireGuard tunnel with (the same
 * at both ends, at every step of A -> A+B -> B), which one a dialler tries, and when the
 * old password may go; and the PSKs desiredWireguard gives each pair.
 */
import { describe, expect, test } from "bun:test";
import { meshPsk } from "../../net/crypto/password.ts";
import {
  dialPassword,
  fingerprint,
  generations,
  pairPassword,
  passwordLabels,
  rotationStatus,
} from "../../net/crypto/rotation.ts";
import { generatePrivateKey, keyToBase64, pairPsk, publicKeyOf } from "../../net/crypto/wg-keys.ts";
import { desiredWireguard } from "../../net/encap/wireguard.ts";

const RANGE = "10.32.0.0/12";
const stretch = (p: string) => meshPsk(new TextEncoder().encode(p), RANGE, { N: 2 ** 10, r: 8, p: 1 });
const A = stretch("password A, the old one");
const B = stretch("password B, the new one");
const fa = fingerprint(A);
const fb = fingerprint(B);

describe("fingerprints", () => {
  test("16 hex digits, one per password, none of the key's bytes", () => {
    expect(fa).toMatch(/^[0-9a-f]{16}$/);
    expect(fb).not.toBe(fa);
    expect(fingerprint(A)).toBe(fa);
    expect(Buffer.from(A).toString("hex")).not.toContain(fa);
    // the WireGuard pair key is another derivation: no fingerprint is a prefix of one
    const k1 = publicKeyOf(generatePrivateKey());
    const k2 = publicKeyOf(generatePrivateKey());
    expect(Buffer.from(pairPsk(A, k1, k2)).toString("hex")).not.toContain(fa);
  });

  test("a next password equal to the current one is one password", () => {
    expect(generations([A, A]).map((g) => g.fingerprint)).toEqual([fa]);
    expect(generations([A, B]).map((g) => g.fingerprint)).toEqual([fa, fb]);
  });
});

describe("the pair's password (its WireGuard PSK)", () => {
  const cases: [string[], string[], string | undefined][] = [
    [[fa], [fa], fa],
    [[fa, fb], [fa], fa], // step 1, one end given both
    [[fa, fb], [fa, fb], fb], // step 1 done at both ends: the new one at once
    [[fb], [fa, fb], fb], // step 2, one end given only B
    [[fb], [fb], fb],
    [[fa], [fb], undefined], // someone skipped step 1: no tunnel, fail closed
    [[fa, fb], [fb, fa], [fa, fb].sort()[0]], // lists in another order still agree
  ];
  test.each(cases)("%p with %p -> %p, the same from both ends", (x, y, want) => {
    expect(pairPassword(x, y)).toBe(want);
    expect(pairPassword(y, x)).toBe(want);
  });

  test("a peer whose entry names no passwords (an agent before rotation) is taken to hold our current one", () => {
    expect(pairPassword([fa, fb], undefined)).toBe(fa);
    expect(pairPassword([fa, fb], [])).toBe(fa);
  });

  test("every step of A -> A+B -> B, one node at a time, keeps a common password for every pair", () => {
    const nodes: string[][] = [[fa], [fa], [fa]];
    const steps: [number, string[]][] = [
      [0, [fa, fb]],
      [1, [fa, fb]],
      [2, [fa, fb]],
      [0, [fb]],
      [1, [fb]],
      [2, [fb]],
    ];
    for (const [i, now] of steps) {
      nodes[i] = now;
      for (const x of nodes) for (const y of nodes) expect(pairPassword(x, y)).toBeDefined();
    }
  });

  test("desiredWireguard keys each pair with its password, and leaves out a peer with none in common", () => {
    const priv = generatePrivateKey();
    const self = {
      privateKey: keyToBase64(priv),
      clusterSecret: A,
      generations: generations([A, B]),
      underlay: "198.18.0.11",
    };
    const keys = [1, 2, 3, 4].map(() => publicKeyOf(generatePrivateKey()));
    const remotes = [
      { name: "n1", ip: "198.18.0.12", publicKey: keyToBase64(keys[0]!), passwords: [fa] },
      { name: "n2", ip: "198.18.0.13", publicKey: keyToBase64(keys[1]!), passwords: [fa, fb] },
      { name: "n3", ip: "198.18.0.14", publicKey: keyToBase64(keys[2]!), passwords: [fb] },
      { name: "n4", ip: "198.18.0.15", publicKey: keyToBase64(keys[3]!), passwords: [fingerprint(stretch("C"))] },
    ];
    const { want, skipped } = desiredWireguard(self, remotes);
    const psk = (i: number) => want.peers.find((p) => p.publicKey === keyToBase64(keys[i]!))?.presharedKey;
    const me = publicKeyOf(priv);
    expect(psk(0)).toBe(keyToBase64(pairPsk(A, me, keys[0]!)));
    expect(psk(1)).toBe(keyToBase64(pairPsk(B, me, keys[1]!)));
    expect(psk(2)).toBe(keyToBase64(pairPsk(B, me, keys[2]!)));
    expect(psk(3)).toBeUndefined();
    expect(skipped.map((s) => s.name)).toEqual(["n4"]);
    expect(skipped[0]!.reason).toContain("none of this node's passwords");
    // without generations, every pair from the one password, as before rotation existed
    const plain = desiredWireguard({ ...self, generations: undefined }, remotes);
    expect(plain.want.peers.length).toBe(4);
    expect(plain.want.peers.every((p, i) => p.presharedKey === keyToBase64(pairPsk(A, me, keys[i]!)))).toBe(true);
  });
});

describe("the dialler's password", () => {
  test("the pair's password when the listener's entry is known, else the current; the other after each refusal", () => {
    expect(dialPassword([fa], undefined, 0)).toBe(0);
    expect(dialPassword([fa], [fb], 3)).toBe(0);
    expect(dialPassword([fa, fb], undefined, 0)).toBe(0);
    expect(dialPassword([fa, fb], undefined, 1)).toBe(1);
    expect(dialPassword([fa, fb], [fa, fb], 0)).toBe(1);
    expect(dialPassword([fa, fb], [fb], 0)).toBe(1);
    expect(dialPassword([fa, fb], [fb], 1)).toBe(0); // its entry was stale
    expect(dialPassword([fa, fb], [fa], 0)).toBe(0);
  });
});

describe("when the old password can be dropped", () => {
  const peer = (nickname: string, passwords?: string[]) => ({ name: nickname, nickname, passwords });
  test("only once every known peer (this one included) holds the next", () => {
    const ours = [fa, fb];
    const st = rotationStatus(ours, [peer("n1", [fa, fb]), peer("n2", [fa]), peer("n3")]);
    expect(st).toEqual({ rotating: true, holdingNext: ["n1"], waitingFor: ["n2", "n3"], oldCanBeDropped: false });
    const done = rotationStatus(ours, [peer("n1", [fa, fb]), peer("n2", [fb]), peer("n3", [fa, fb])]);
    expect(done.oldCanBeDropped).toBe(true);
    expect(done.waitingFor).toEqual([]);
    // one password: nothing to drop
    expect(rotationStatus([fb], [peer("n1", [fb])]).oldCanBeDropped).toBe(false);
  });

  test("status and /report name a peer's passwords by this node's labels, never by fingerprint", () => {
    expect(passwordLabels([fa, fb], [fa])).toEqual(["current"]);
    expect(passwordLabels([fa, fb], [fa, fb])).toEqual(["current", "next"]);
    expect(passwordLabels([fb], [fa, fb])).toEqual(["other", "current"]);
    expect(passwordLabels([fa], undefined)).toEqual([]);
  });
});
