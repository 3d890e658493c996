/**
 * Noise handshake patterns (spec rev 34, §7): the twelve fundamental interactive
 * patterns and the three one-way ones, with psk modifiers. The mesh uses only XXpsk3;
 * the others are here because the published test vectors cover them, and replaying all
 * of them checks the state machine far better than one pattern would.
 *
 * A modifier "pskN" puts a psk token at the end of message N, "psk0" at the start of
 * the first; several join with "+" (XXpsk0+psk3).
 */

export type Token = "e" | "s" | "ee" | "es" | "se" | "ss" | "psk";

export type Pattern = {
  name: string;
  /** Pre-messages: keys each side knows of the other before the handshake. */
  preInitiator: Token[];
  preResponder: Token[];
  /** Message i is written by the initiator when i is even (one-way: always). */
  messages: Token[][];
  oneWay: boolean;
  psk: boolean;
};

const FUNDAMENTAL: Record<string, { pre: [string, string]; msgs: string[] }> = {
  N: { pre: ["", "s"], msgs: ["e, es"] },
  K: { pre: ["s", "s"], msgs: ["e, es, ss"] },
  X: { pre: ["", "s"], msgs: ["e, es, s, ss"] },
  NN: { pre: ["", ""], msgs: ["e", "e, ee"] },
  NK: { pre: ["", "s"], msgs: ["e, es", "e, ee"] },
  NX: { pre: ["", ""], msgs: ["e", "e, ee, s, es"] },
  KN: { pre: ["s", ""], msgs: ["e", "e, ee, se"] },
  KK: { pre: ["s", "s"], msgs: ["e, es, ss", "e, ee, se"] },
  KX: { pre: ["s", ""], msgs: ["e", "e, ee, se, s, es"] },
  XN: { pre: ["", ""], msgs: ["e", "e, ee", "s, se"] },
  XK: { pre: ["", "s"], msgs: ["e, es", "e, ee", "s, se"] },
  XX: { pre: ["", ""], msgs: ["e", "e, ee, s, es", "s, se"] },
  IN: { pre: ["", ""], msgs: ["e, s", "e, ee, se"] },
  IK: { pre: ["", "s"], msgs: ["e, es, s, ss", "e, ee, se"] },
  IX: { pre: ["", ""], msgs: ["e, s", "e, ee, se, s, es"] },
};

export class PatternError extends Error {}

const tokens = (text: string) => (text ? (text.split(", ") as Token[]) : []);

/** "XXpsk3" (the part of a protocol name between "Noise_" and the suite) -> its pattern. */
export function parsePattern(name: string): Pattern {
  const m = /^([A-Z]{1,2})((?:psk\d)(?:\+psk\d)*)?$/.exec(name);
  const base = m ? FUNDAMENTAL[m[1]!] : undefined;
  if (!m || !base) throw new PatternError(`"${name}" is not a fundamental Noise pattern with psk modifiers`);
  const messages = base.msgs.map(tokens);
  const positions = m[2] ? m[2].split("+").map((p) => Number(p.slice(3))) : [];
  for (const at of positions) {
    if (at > messages.length) throw new PatternError(`"${name}": psk${at} is past the last message`);
    if (at === 0) messages[0]!.unshift("psk");
    else messages[at - 1]!.push("psk");
  }
  return {
    name,
    preInitiator: tokens(base.pre[0]),
    preResponder: tokens(base.pre[1]),
    messages,
    oneWay: m[1]!.length === 1,
    psk: positions.length > 0,
  };
}
