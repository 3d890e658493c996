/**
 * Peer identity: a stable 48-bit name shown as a MAC (from the machine id and the data
 * dir, kept in the data dir), and a random id per start so restarts are noticed.
 */

/** Format the low 48 bits of a hex digest as aa:bb:cc:dd:ee:ff, locally administered. */
export function nameFromSeed(hexDigest: string): string {
  const bytes = hexDigest
    .slice(0, 12)
    .match(/../g)!
    .map((h) => parseInt(h, 16));
  bytes[0] = (bytes[0]! | 0x02) & 0xfe; // locally administered, unicast
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

export function isPeerName(s: string): boolean {
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(s);
}

export function randomUid(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The 48-bit number of a peer name (exact in a double), for compact wire formats. */
export function nameToNum(name: string): number {
  return parseInt(name.replaceAll(":", ""), 16);
}
