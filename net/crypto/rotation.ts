/**
 * Password rotation (pure): which password generation a connection dials with, which one
 * a pair of nodes keys its WireGuard tunnel with, and when the old password may go
 * (docs/protocol.md, "Rotation").
 *
 * A node holds one password, or two while rotating: its current one and the next one,
 * in that order. Each peer says in its entry (gossiped only over sealed, authenticated
 * connections) which it holds, as fingerprints: HKDF-SHA256 of the stretched key (the
 * mesh PSK) under a label of its own, 8 bytes in hex. A fingerprint is no key (HKDF is
 * one-way and the label separates it from every key derived from the PSK) and no cheaper
 * password oracle than a handshake: a guess still costs scrypt. Outside the mesh (/report,
 * status) only labels relative to this node's own passwords appear, never fingerprints.
 */
import { hkdfSync } from "node:crypto";

const FINGERPRINT_LABEL = "weave password fingerprint v1";
export const FINGERPRINT_BYTES = 8;

/** One password as the agent holds it: its stretched key and that key's fingerprint. */
export type Generation = { psk: Uint8Array; fingerprint: string };

export function fingerprint(psk: Uint8Array): string {
  return Buffer.from(hkdfSync("sha256", psk, new Uint8Array(0), FINGERPRINT_LABEL, FINGERPRINT_BYTES)).toString("hex");
}

/** The agent's passwords (current first, then next), with a next equal to the current folded into one. */
export function generations(psks: Uint8Array[]): Generation[] {
  const out: Generation[] = [];
  for (const psk of psks) {
    const f = fingerprint(psk);
    if (!out.some((g) => g.fingerprint === f)) out.push({ psk, fingerprint: f });
  }
  return out;
}

/**
 * The password a pair of nodes uses (its WireGuard PSK, and what a dialler tries first):
 * among the passwords both hold, the one newest for both, i.e. with the highest sum of
 * its positions in the two lists (0 current, 1 next), ties broken by the smaller
 * fingerprint. The rule is symmetric, so both ends pick the same one from the same two
 * entries. A peer whose entry names none (an agent from before rotation) is taken to
 * hold our current password. undefined: nothing in common (no tunnel; fail closed).
 */
export function pairPassword(ours: string[], theirs: string[] | undefined): string | undefined {
  if (!theirs || theirs.length === 0) return ours[0];
  const rank = (f: string) => ours.indexOf(f) + theirs.indexOf(f);
  const common = ours.filter((f) => theirs.includes(f));
  common.sort((a, b) => rank(b) - rank(a) || (a < b ? -1 : a > b ? 1 : 0));
  return common[0];
}

/**
 * The index (into `ours`) of the password a dialler uses for message 3: the pair's
 * password when the listener's entry is known, else our current one; after each refusal
 * that means "wrong password" (the listener hung up after message 3), the next of ours,
 * round robin, so a stale entry or an unknown peer costs at most one backoff step.
 */
export function dialPassword(ours: string[], theirs: string[] | undefined, refusals: number): number {
  const preferred = theirs ? pairPassword(ours, theirs) : undefined;
  const start = preferred === undefined ? 0 : Math.max(0, ours.indexOf(preferred));
  return (start + refusals) % Math.max(1, ours.length);
}

export type RotationPeer = { name: string; nickname: string; passwords?: string[] };

export type RotationStatus = {
  /** This node holds two passwords. */
  rotating: boolean;
  /** Peers (every entry known, reachable or not, this node included) holding this node's next password. */
  holdingNext: string[];
  /** Peers that do not (yet): nicknames. */
  waitingFor: string[];
  /** Every known peer holds the next password: every node may now be given only that one. */
  oldCanBeDropped: boolean;
};

/** Whether every peer holds the new password yet: what `weave status` and /report say. */
export function rotationStatus(ours: string[], peers: RotationPeer[]): RotationStatus {
  const next = ours.at(-1);
  const rotating = ours.length > 1;
  const holding = peers.filter((p) => next !== undefined && (p.passwords ?? []).includes(next));
  const waiting = peers.filter((p) => !holding.includes(p));
  return {
    rotating,
    holdingNext: holding.map((p) => p.nickname),
    waitingFor: waiting.map((p) => p.nickname).sort(),
    oldCanBeDropped: rotating && waiting.length === 0,
  };
}

/** What a peer holds, in terms of this node's passwords: "current", "next", "other" (never a fingerprint). */
export function passwordLabels(ours: string[], theirs: string[] | undefined): string[] {
  if (!theirs) return [];
  const names = ours.length > 1 ? ["current", "next"] : ["current"];
  return theirs.map((f) => (ours.includes(f) ? names[ours.indexOf(f)]! : "other"));
}
