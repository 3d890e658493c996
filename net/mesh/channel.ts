/**
 * One mesh connection's wire, below the router: preambles, the version, the Mode
 * frame, the Noise handshake, and then frames, plain or sealed. The router sees only
 * "open" (send your Hello now) and frames.
 *
 *   both:      preamble "weave\0" min max                  (at once)
 *   v2, both:  Mode [0 | 1]                                (once the versions agree)
 *   mode 1:    -> Noise e                                  (the dialler initiates)
 *              <- Noise e, ee, s, es
 *              -> Noise s, se, psk     then sealed frames, both ways (sealed.ts)
 *
 * The pattern is Noise_XXpsk3_25519_AESGCM_SHA256: only holders of the PSK complete
 * it, and the prologue binds both preambles, so a rewritten version range fails the
 * handshake. Mismatched setups are refused by both sides, each with its reason: another
 * version range, one side with a password and the other without, or (XXpsk3's third
 * message failing) another password. Only the listener can tell a wrong password; the
 * dialler learns it when the listener hangs up instead of sending its first sealed
 * frame, hence `awaitingProof`.
 *
 * Rotation (two passwords): the dialler mixes one PSK into message 3 (`dialWith`, the
 * router's choice); the listener reads message 3 with each PSK it holds, current first,
 * each try on a fork of the handshake state, and refuses only when none opens.
 */
import { HandshakeState, NoiseError } from "../crypto/noise.ts";
import { hkdf, type KeyPair } from "../crypto/suite.ts";
import {
  encodeFrame,
  frameOf,
  FrameType,
  MAX_FRAME,
  negotiate,
  preamble,
  PROTOCOL_MODES,
  ProtocolError,
  readPreamble,
  StreamCutter,
  type Frame,
} from "./frame.ts";
import { MAX_RECORD, SealedPipe } from "./sealed.ts";

export const NOISE_PROTOCOL = "Noise_XXpsk3_25519_AESGCM_SHA256";
const PROLOGUE_LABEL = "weave mesh\0";
const SLEEVE_LABEL = new TextEncoder().encode("weave sleeve\0");
const MODE_PLAIN = 0;
const MODE_NOISE = 1;

/**
 * What a peer with a password holds: the PSK (from the password), while rotating the
 * next password's PSK too, and its static key.
 */
export type MeshSecret = { psk: Uint8Array; next?: Uint8Array; staticKey: KeyPair };

/** The two sides' setups cannot talk (versions, password or not, another password). */
export class RefusedError extends Error {}

export type ChannelOptions = {
  outbound: boolean;
  /** The peer's address, for messages. */
  address: string;
  versions: { min: number; max: number };
  secret?: MeshSecret;
  /** The dialler: the PSK it mixes into message 3 (default the current one). */
  dialWith?: Uint8Array;
  send(bytes: Uint8Array): void;
};

type Phase = "preamble" | "mode" | "handshake" | "open";

const wrongPassword = (address: string, how: string) =>
  `handshake with ${address} failed: wrong password or not a weave peer (${how}; ` +
  "peers must share WEAVE_PASSWORD and IPALLOC_RANGE): refused";

export class Channel {
  phase: Phase = "preamble";
  version?: number;
  encrypted = false;
  /** The peer's Noise static key, once the handshake has authenticated it. */
  remoteStatic?: Uint8Array;
  /** Which of our PSKs the handshake used: 0 the current, 1 the next. */
  pskIndex?: number;
  /**
   * The sleeve's keys for this connection (net/host/sleeve.ts), one per direction, from
   * the handshake hash: fresh with every connection, so the sleeve's counters never repeat
   * under a key.
   */
  sleeveKeys?: { send: Uint8Array; recv: Uint8Array };
  private cutter = new StreamCutter();
  private ours: Uint8Array;
  private theirs?: Uint8Array;
  private hs?: HandshakeState;
  private pipe?: SealedPipe;
  private proofPending = false;

  constructor(private readonly o: ChannelOptions) {
    this.ours = preamble(o.versions.min, o.versions.max);
  }

  /** The dialler sent its last handshake message; the listener has not shown it holds the PSK. */
  get awaitingProof(): boolean {
    return this.proofPending;
  }

  /** Why the connection failed, when the peer hung up while we awaited its proof. */
  hungUp(): string {
    return wrongPassword(this.o.address, "it hung up after our last handshake message");
  }

  start(): void {
    this.o.send(this.ours);
  }

  /** An encoded frame out: as it is, or sealed. */
  sendFrame(frame: Uint8Array): void {
    this.o.send(this.pipe ? this.pipe.seal(frame) : frame);
  }

  /**
   * Bytes in -> the frames they complete, and whether the channel opened on the way
   * (then the router sends its Hello before it handles the frames). Throws
   * RefusedError or ProtocolError; either way the connection is done.
   */
  push(chunk: Uint8Array): { frames: Frame[]; opened: boolean } {
    this.cutter.push(chunk);
    const frames: Frame[] = [];
    let opened = false;
    for (;;) {
      if (this.phase === "preamble") {
        const p = this.cutter.preamble();
        if (!p) break;
        opened = this.onPreamble(p.slice()) || opened;
        continue;
      }
      const body = this.cutter.unit(this.pipe ? MAX_RECORD : MAX_FRAME);
      if (!body) break;
      if (this.phase === "open") frames.push(this.pipe ? this.openRecord(body) : frameOf(body[0]!, body.subarray(1)));
      else if (this.phase === "mode") opened = this.onMode(body) || opened;
      else opened = this.onNoise(body) || opened;
    }
    this.cutter.done();
    return { frames, opened };
  }

  private onPreamble(p: Uint8Array): boolean {
    this.theirs = p;
    const theirs = readPreamble(p);
    const v = negotiate(theirs, this.o.versions);
    if (v === undefined) {
      const ranges = `${theirs.min}-${theirs.max}, we speak ${this.o.versions.min}-${this.o.versions.max}`;
      throw new RefusedError(`peer at ${this.o.address} speaks mesh protocol versions ${ranges}: refused`);
    }
    this.version = v;
    if (v < PROTOCOL_MODES) {
      if (this.o.secret)
        throw new RefusedError(
          `peer at ${this.o.address} speaks only mesh protocol ${v}, which cannot encrypt, and we have a password: refused`,
        );
      this.phase = "open";
      return true;
    }
    this.phase = "mode";
    this.o.send(encodeFrame(FrameType.Mode, Uint8Array.of(this.o.secret ? MODE_NOISE : MODE_PLAIN)));
    return false;
  }

  private onMode(body: Uint8Array): boolean {
    if (body[0] !== FrameType.Mode) throw new ProtocolError(`frame 0x${body[0]!.toString(16)} before the mode frame`);
    if (body.length !== 2) throw new ProtocolError(`mode frame of ${body.length - 1} bytes, not 1`);
    const theirs = body[1]!;
    if (theirs !== MODE_PLAIN && theirs !== MODE_NOISE)
      throw new RefusedError(
        `peer at ${this.o.address} asks for connection mode ${theirs}, which we do not know: refused`,
      );
    if (theirs === MODE_PLAIN && this.o.secret)
      throw new RefusedError(`peer at ${this.o.address} has no password: refused`);
    if (theirs === MODE_NOISE && !this.o.secret)
      throw new RefusedError(`peer at ${this.o.address} has a password and we have none: refused`);
    if (!this.o.secret) {
      this.phase = "open";
      return true;
    }
    this.phase = "handshake";
    const [initiatorPreamble, responderPreamble] = this.o.outbound
      ? [this.ours, this.theirs!]
      : [this.theirs!, this.ours];
    const label = new TextEncoder().encode(PROLOGUE_LABEL);
    const prologue = new Uint8Array([...label, ...initiatorPreamble, ...responderPreamble]);
    this.hs = new HandshakeState({
      protocol: NOISE_PROTOCOL,
      initiator: this.o.outbound,
      prologue,
      s: this.o.secret.staticKey,
      psks: [this.o.outbound ? (this.o.dialWith ?? this.o.secret.psk) : this.o.secret.psk],
    });
    if (this.o.outbound) this.o.send(encodeFrame(FrameType.Noise, this.hs.writeMessage()));
    return false;
  }

  /** A handshake message: read it, answer if it is our turn, open when the pattern ends. */
  private onNoise(body: Uint8Array): boolean {
    const hs = this.hs!;
    if (body[0] !== FrameType.Noise) throw new ProtocolError(`frame 0x${body[0]!.toString(16)} during the handshake`);
    // XXpsk3 mixes the PSK into the last message only: failing there means another password.
    const lastMessage = hs.remainingMessages === 1;
    try {
      if (lastMessage && !this.o.outbound) this.readLast(body.subarray(1));
      else hs.readMessage(body.subarray(1));
    } catch (e) {
      if (!(e instanceof NoiseError)) throw e;
      if (lastMessage) throw new RefusedError(wrongPassword(this.o.address, "its last handshake message did not open"));
      throw new RefusedError(`handshake with ${this.o.address} failed: ${e.message}: not a weave peer: refused`);
    }
    const now = this.hs!;
    if (now.myTurn) this.o.send(encodeFrame(FrameType.Noise, now.writeMessage()));
    if (!now.finished) return false;
    const t = now.split();
    this.pipe = new SealedPipe(t.send, t.recv);
    this.remoteStatic = now.rs;
    const [dialler, listener] = hkdf(t.handshakeHash, SLEEVE_LABEL, 2) as [Uint8Array, Uint8Array];
    this.sleeveKeys = this.o.outbound ? { send: dialler, recv: listener } : { send: listener, recv: dialler };
    this.pskIndex ??= this.o.secret!.next && this.o.dialWith === this.o.secret!.next ? 1 : 0;
    this.encrypted = true;
    this.phase = "open";
    this.proofPending = this.o.outbound;
    return true;
  }

  /** The listener's message 3: with each PSK we hold, on a fork, until one opens; throws the last NoiseError. */
  private readLast(message: Uint8Array): void {
    const keys = [this.o.secret!.psk, ...(this.o.secret!.next ? [this.o.secret!.next] : [])];
    let failure: unknown;
    for (const [i, k] of keys.entries()) {
      const trial = this.hs!.fork([k]);
      try {
        trial.readMessage(message);
      } catch (e) {
        failure = e;
        continue;
      }
      this.hs = trial;
      this.pskIndex = i;
      return;
    }
    throw failure;
  }

  private openRecord(body: Uint8Array): Frame {
    try {
      const frame = this.pipe!.open(body);
      this.proofPending = false;
      return frame;
    } catch (e) {
      // The listener's first sealed frame is its proof of the PSK.
      if (this.proofPending)
        throw new RefusedError(wrongPassword(this.o.address, "its first sealed frame did not open"));
      throw e;
    }
  }
}
