/**
 * The Noise Protocol Framework's state machine (spec rev 34, §5): CipherState,
 * SymmetricState and HandshakeState, written from the spec over the primitives of
 * suite.ts, for protocol names "Noise_<pattern>_25519_AESGCM_SHA256". Checked against
 * the cacophony and snow test vectors (tests/unit/noise.test.ts).
 *
 * A failed read leaves the handshake unusable: the caller drops the connection. After
 * the last message `split()` gives the two transport CipherStates, one per direction.
 */
import { parsePattern, type Pattern, type Token } from "./patterns.ts";
import {
  CryptoError,
  DHLEN,
  dh,
  HASHLEN,
  hash,
  hkdf,
  keyPair,
  open,
  seal,
  SUITE,
  TAGLEN,
  type KeyPair,
} from "./suite.ts";

export class NoiseError extends Error {}

const EMPTY = new Uint8Array(0);
/** Nonce 2^64-1 is reserved by the spec; our counter is a number, so stop well before. */
const MAX_NONCE = Number.MAX_SAFE_INTEGER;

/** A key and a counter nonce: every message uses the next nonce, so none can repeat. */
export class CipherState {
  n = 0;
  constructor(private readonly k?: Uint8Array) {}

  hasKey(): boolean {
    return this.k !== undefined;
  }

  /** `headroom`: bytes left free in front of the ciphertext, for the caller's header. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array, headroom = 0): Uint8Array {
    if (!this.k) {
      const out = new Uint8Array(headroom + plaintext.length);
      out.set(plaintext, headroom);
      return out;
    }
    if (this.n >= MAX_NONCE) throw new NoiseError("nonce exhausted");
    const sealed = seal(this.k, this.n, ad, plaintext, headroom);
    this.n++;
    return sealed;
  }

  /** The counter moves only on success: a forged message does not shift the next nonce. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (!this.k) return ciphertext.slice();
    if (this.n >= MAX_NONCE) throw new NoiseError("nonce exhausted");
    const plaintext = open(this.k, this.n, ad, ciphertext);
    this.n++;
    return plaintext;
  }

  copy(): CipherState {
    const c = new CipherState(this.k);
    c.n = this.n;
    return c;
  }
}

class SymmetricState {
  ck: Uint8Array;
  h: Uint8Array;
  cs = new CipherState();

  constructor(protocolName: string) {
    const name = new TextEncoder().encode(protocolName);
    const padded = new Uint8Array(HASHLEN);
    padded.set(name.subarray(0, HASHLEN));
    this.h = name.length <= HASHLEN ? padded : hash(name);
    this.ck = this.h;
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, k] = hkdf(this.ck, ikm, 2);
    this.ck = ck!;
    this.cs = new CipherState(k);
  }

  mixHash(data: Uint8Array): void {
    this.h = hash(this.h, data);
  }

  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, h, k] = hkdf(this.ck, ikm, 3);
    this.ck = ck!;
    this.mixHash(h!);
    this.cs = new CipherState(k);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cs.encryptWithAd(this.h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.cs.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  copy(): SymmetricState {
    const c = Object.create(SymmetricState.prototype) as SymmetricState;
    c.ck = this.ck;
    c.h = this.h;
    c.cs = this.cs.copy();
    return c;
  }

  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf(this.ck, EMPTY, 2);
    return [new CipherState(k1), new CipherState(k2)];
  }
}

export type HandshakeOptions = {
  /** e.g. "Noise_XXpsk3_25519_AESGCM_SHA256". */
  protocol: string;
  initiator: boolean;
  prologue?: Uint8Array;
  /** Our static key pair, for patterns that send or pre-share one. */
  s?: KeyPair;
  /** Our ephemeral key pair: only the test vectors fix it; otherwise fresh per handshake. */
  e?: KeyPair;
  /** The peer's static public key, for patterns where it is known in advance. */
  rs?: Uint8Array;
  re?: Uint8Array;
  /** One 32-byte key per psk token, in order. */
  psks?: Uint8Array[];
};

export type Transport = { send: CipherState; recv: CipherState; handshakeHash: Uint8Array };

export class HandshakeState {
  private ss: SymmetricState;
  private pattern: Pattern;
  private initiator: boolean;
  private s?: KeyPair;
  private e?: KeyPair;
  private fixedE?: KeyPair;
  private psks: Uint8Array[];
  private next = 0;
  rs?: Uint8Array;
  re?: Uint8Array;

  constructor(o: HandshakeOptions) {
    const m = /^Noise_([A-Za-z0-9+]+)_(.+)$/.exec(o.protocol);
    if (!m || m[2] !== SUITE) throw new NoiseError(`"${o.protocol}" is not a Noise protocol of suite ${SUITE}`);
    this.pattern = parsePattern(m[1]!);
    this.initiator = o.initiator;
    this.s = o.s;
    this.fixedE = o.e;
    this.rs = o.rs;
    this.re = o.re;
    this.psks = [...(o.psks ?? [])];
    if (this.psks.some((k) => k.length !== 32)) throw new NoiseError("a pre-shared key must be 32 bytes");
    this.ss = new SymmetricState(o.protocol);
    this.ss.mixHash(o.prologue ?? EMPTY);
    this.preMessage(this.pattern.preInitiator, this.initiator);
    this.preMessage(this.pattern.preResponder, !this.initiator);
  }

  /**
   * An independent copy of this state, with `psks` for the psk tokens still to come: a
   * responder holding two keys (a password rotation) reads the last message with each
   * until one opens, without the failed try touching this state.
   */
  fork(psks: Uint8Array[] = this.psks): HandshakeState {
    if (psks.some((k) => k.length !== 32)) throw new NoiseError("a pre-shared key must be 32 bytes");
    const c = Object.create(HandshakeState.prototype) as HandshakeState;
    Object.assign(c, this);
    c.ss = this.ss.copy();
    c.psks = [...psks];
    return c;
  }

  /** Keys a side knows in advance are hashed in, the initiator's first. */
  private preMessage(tokens: Token[], ours: boolean): void {
    for (const t of tokens) {
      const key = t === "s" ? (ours ? this.s?.publicKey : this.rs) : ours ? this.e?.publicKey : this.re;
      if (!key) throw new NoiseError(`pattern ${this.pattern.name} needs the ${ours ? "local" : "remote"} ${t} key`);
      this.ss.mixHash(key);
      if (t === "e" && this.pattern.psk) this.ss.mixKey(key);
    }
  }

  get finished(): boolean {
    return this.next >= this.pattern.messages.length;
  }

  get remainingMessages(): number {
    return this.pattern.messages.length - this.next;
  }

  /** Whether the next message is ours to write. */
  get myTurn(): boolean {
    const initiatorWrites = this.pattern.oneWay || this.next % 2 === 0;
    return !this.finished && initiatorWrites === this.initiator;
  }

  get handshakeHash(): Uint8Array {
    return this.ss.h;
  }

  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    if (!this.myTurn) throw new NoiseError("not our turn to write a handshake message");
    const parts: Uint8Array[] = [];
    for (const t of this.pattern.messages[this.next]!) {
      if (t === "e") {
        this.e = this.fixedE ?? keyPair();
        parts.push(this.e.publicKey);
        this.ss.mixHash(this.e.publicKey);
        if (this.pattern.psk) this.ss.mixKey(this.e.publicKey);
      } else if (t === "s") {
        if (!this.s) throw new NoiseError("pattern sends a static key, and we have none");
        parts.push(this.ss.encryptAndHash(this.s.publicKey));
      } else this.mix(t);
    }
    parts.push(this.ss.encryptAndHash(payload));
    this.next++;
    return concat(parts);
  }

  /** The payload; throws NoiseError when the message is short or does not authenticate. */
  readMessage(message: Uint8Array): Uint8Array {
    if (this.finished || this.myTurn) throw new NoiseError("not expecting a handshake message");
    let at = 0;
    const take = (n: number, what: string) => {
      if (message.length - at < n) throw new NoiseError(`handshake message too short for ${what}`);
      at += n;
      return message.subarray(at - n, at);
    };
    try {
      for (const t of this.pattern.messages[this.next]!) {
        if (t === "e") {
          this.re = take(DHLEN, "an ephemeral key").slice();
          this.ss.mixHash(this.re);
          if (this.pattern.psk) this.ss.mixKey(this.re);
        } else if (t === "s") {
          const sealedLength = this.ss.cs.hasKey() ? DHLEN + TAGLEN : DHLEN;
          this.rs = this.ss.decryptAndHash(take(sealedLength, "a static key"));
        } else this.mix(t);
      }
      const payload = this.ss.decryptAndHash(message.subarray(at));
      this.next++;
      return payload;
    } catch (e) {
      if (e instanceof CryptoError) throw new NoiseError(e.message);
      throw e;
    }
  }

  /** The DH and psk tokens, the same for writer and reader but for whose key is whose. */
  private mix(t: Token): void {
    if (t === "psk") {
      const psk = this.psks.shift();
      if (!psk) throw new NoiseError("pattern has more psk tokens than keys were given");
      this.ss.mixKeyAndHash(psk);
      return;
    }
    const local = t[this.initiator ? 0 : 1] === "e" ? this.e : this.s;
    const remote = t[this.initiator ? 1 : 0] === "e" ? this.re : this.rs;
    if (!local || !remote) throw new NoiseError(`token ${t} lacks a key`);
    this.ss.mixKey(dh(local, remote));
  }

  /** After the last message: the initiator sends with the first key, the responder with the second. */
  split(): Transport {
    if (!this.finished) throw new NoiseError("handshake not finished");
    const [c1, c2] = this.ss.split();
    const handshakeHash = this.ss.h;
    return this.initiator ? { send: c1, recv: c2, handshakeHash } : { send: c2, recv: c1, handshakeHash };
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
