/**
 * A sliding replay window for sealed sleeve frames, as RFC 6479 and WireGuard keep one:
 * a ring of 2048 bits in 64 words, the highest counter seen as its top. A counter above
 * the top slides the window (clearing the words it passes, at most the whole ring); one
 * inside it is accepted once; one more than 2016 (2048 - one word) below the top is too
 * old. The spare word is what lets the window slide a word at a time without losing the
 * bits of counters still inside it. Check before the tag is verified, accept after, so a
 * forged frame cannot move the window.
 */
export const REPLAY_BITS = 2048;
const WORD_BITS = 32;
const WORDS = REPLAY_BITS / WORD_BITS;
/** How far below the highest counter seen a counter is still accepted. */
export const REPLAY_WINDOW = REPLAY_BITS - WORD_BITS;

export class ReplayWindow {
  private readonly ring = new Uint32Array(WORDS);
  private top = 0;

  /** Would `counter` be accepted? Changes nothing. */
  check(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0) return false;
    if (counter > this.top) return true;
    if (this.top - counter > REPLAY_WINDOW) return false;
    const bit = 1 << (counter % WORD_BITS);
    return (this.ring[Math.floor(counter / WORD_BITS) % WORDS]! & bit) === 0;
  }

  /** Mark `counter` as seen; false (and nothing changed) if it was, or is out of the window. */
  accept(counter: number): boolean {
    if (!this.check(counter)) return false;
    const word = Math.floor(counter / WORD_BITS);
    if (counter > this.top) {
      const current = Math.floor(this.top / WORD_BITS);
      const slide = Math.min(word - current, WORDS);
      for (let i = 1; i <= slide; i++) this.ring[(current + i) % WORDS] = 0;
      this.top = counter;
    }
    this.ring[word % WORDS]! |= 1 << (counter % WORD_BITS);
    return true;
  }

  /** The highest counter accepted so far (0 before any). */
  get highest(): number {
    return this.top;
  }
}
