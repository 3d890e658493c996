/**
 * Sealed frames: what every frame becomes once the Noise handshake of a connection has
 * finished. A record is a 4-byte big-endian length, then the frame's type byte and
 * payload sealed with AES-256-GCM under this direction's key, the length as associated
 * data, and the 16-byte tag:
 *
 *   | length L (4) | AES-GCM(k, nonce = n, ad = length, type + payload) + tag (L bytes) |
 *
 * n is the Noise CipherState's counter: 0 for the first record each way, one more for
 * every record, never sent. The receiver opens record i with nonce i, so a replayed, a
 * reordered, a dropped or an altered record fails its tag, and the connection closes.
 * A record cut short never completes, and a length made shorter fails the tag.
 *
 * Noise limits its own messages to 65535 bytes; these records are our framing around
 * the CipherState, not Noise messages, and carry frames up to the mesh's 16 MiB limit,
 * far inside what one AES-GCM message may hold. One cipher object per record.
 */
import type { CipherState } from "../crypto/noise.ts";
import { CryptoError, TAGLEN } from "../crypto/suite.ts";
import { frameOf, MAX_FRAME, ProtocolError, type Frame } from "./frame.ts";

export const MAX_RECORD = MAX_FRAME + TAGLEN;

/** A record failed to open: tampered, replayed, reordered or cut. */
export class SealError extends ProtocolError {}

function lengthHeader(n: number): Uint8Array {
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, n);
  return header;
}

export class SealedPipe {
  constructor(
    private readonly out: CipherState,
    private readonly in_: CipherState,
  ) {}

  /** Records sent and opened so far. */
  get counts(): { sent: number; opened: number } {
    return { sent: this.out.n, opened: this.in_.n };
  }

  /** An encoded frame (length, type, payload) -> its record. */
  seal(frame: Uint8Array): Uint8Array {
    const body = frame.subarray(4);
    const header = lengthHeader(body.length + TAGLEN);
    const record = this.out.encryptWithAd(header, body, header.length);
    record.set(header);
    return record;
  }

  /** A record's body (what followed its length) -> the frame inside; throws SealError. */
  open(body: Uint8Array): Frame {
    const index = this.in_.n;
    let plain: Uint8Array;
    try {
      plain = this.in_.decryptWithAd(lengthHeader(body.length), body);
    } catch (e) {
      if (!(e instanceof CryptoError)) throw e;
      throw new SealError(`sealed frame ${index} failed authentication (tampered, replayed, reordered or truncated)`);
    }
    if (plain.length < 1) throw new SealError(`sealed frame ${index} is empty`);
    return frameOf(plain[0]!, plain.subarray(1));
  }
}
