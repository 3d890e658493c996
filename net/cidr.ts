/**
 * Addresses and ranges. Parsing, validation and formatting go through `ip-address`, for
 * IPv4 and IPv6 alike (strict forms: no leading zeros, no spaces, prefix within the
 * family's width), so that dual-stack can come next. A range of either family is an
 * `IpRange` (bigints); the IPv4 pod range the allocator works in is a `Cidr` of plain
 * 32-bit numbers, and turning such numbers back into text stays plain arithmetic
 * (`numToIp`): the allocator, the CNI results and the datapath plan do it for every
 * address they touch (bench/ipam: 11k allocations/s), where ip-address is ~20x slower.
 * The CNI plugin never loads this file: ip-address would cost it ~5 ms per call.
 */
import { Address4, Address6 } from "ip-address";

/** An IPv4 range as numbers: the pod range. */
export type Cidr = { base: number; prefix: number };

/** A range of either family: `first` is its network address. */
export type IpRange = { family: 4 | 6; first: bigint; prefix: number };

export class CidrError extends Error {
  constructor(
    readonly value: string,
    reason: string,
  ) {
    super(`"${value}" ${reason}`);
    this.name = "CidrError";
  }
}

const BITS = { 4: 32, 6: 128 } as const;

export function isIpv4(s: string): boolean {
  return !s.includes("/") && Address4.isValid(s);
}

export function isIpv6(s: string): boolean {
  return !s.includes("/") && Address6.isValid(s);
}

export function ipToNum(ip: string): number {
  if (!isIpv4(ip)) throw new CidrError(ip, "is not an IPv4 address");
  return Number(new Address4(ip).bigInt());
}

/** Dotted quad of a 32-bit number (plain arithmetic: see the file note). */
export function numToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Parse "10.32.0.0/12" (IPv4 only: the pod range); `strict` refuses host bits set below the prefix. */
export function parseCidr(s: string, strict = true): Cidr {
  const r = parseRange(s, strict);
  if (r.family === 6)
    throw new CidrError(s, "is an IPv6 range; pod ranges are IPv4 for now (dual-stack is not built yet)");
  return { base: Number(r.first), prefix: r.prefix };
}

/** Parse a range of either family ("10.96.0.0/12", "fd00:10:96::/112"). */
export function parseRange(s: string, strict = true): IpRange {
  const [addressText, prefixText, extra] = s.split("/");
  const family = isIpv4(addressText ?? "") ? 4 : isIpv6(addressText ?? "") ? 6 : undefined;
  if (!family || prefixText === undefined || extra !== undefined || !/^(0|[1-9]\d{0,2})$/.test(prefixText))
    throw new CidrError(s, "is not a CIDR range (like 10.32.0.0/12 or fd00::/64)");
  const prefix = Number(prefixText);
  if (prefix > BITS[family]) throw new CidrError(s, `has a prefix length over ${BITS[family]}`);
  const address = family === 4 ? new Address4(s) : new Address6(s);
  const first = address.startAddress().bigInt();
  if (strict && first !== address.bigInt()) {
    const network = `${address.startAddress().correctForm()}/${prefix}`;
    throw new CidrError(s, `has host bits set (the range would be ${network})`);
  }
  return { family, first, prefix };
}

/** The address `ip` (either family) as a range of one, or undefined when it is not an address. */
function hostRange(ip: string): IpRange | undefined {
  if (isIpv4(ip)) return { family: 4, first: new Address4(ip).bigInt(), prefix: 32 };
  if (isIpv6(ip)) return { family: 6, first: new Address6(ip).bigInt(), prefix: 128 };
  return undefined;
}

/** `r`'s network address with only its first `prefix` bits. */
function networkOf(r: IpRange, prefix: number): bigint {
  const hostBits = BigInt(BITS[r.family] - prefix);
  return (r.first >> hostBits) << hostBits;
}

export function rangesOverlap(a: IpRange, b: IpRange): boolean {
  if (a.family !== b.family) return false;
  const prefix = Math.min(a.prefix, b.prefix);
  return networkOf(a, prefix) === networkOf(b, prefix);
}

/** Whether the address `ip` (either family; anything else is not held) is inside `r`. */
export function rangeHolds(r: IpRange, ip: string): boolean {
  const host = hostRange(ip);
  return host !== undefined && rangesOverlap(r, host);
}

export function formatRange(r: IpRange): string {
  const address = r.family === 4 ? Address4.fromBigInt(r.first) : Address6.fromBigInt(r.first);
  return `${address.correctForm()}/${r.prefix}`;
}

/** The pod range as a range of its family. */
export function asRange(c: Cidr): IpRange {
  return { family: 4, first: BigInt(c.base), prefix: c.prefix };
}

export function maskOf(ip: number, prefix: number): number {
  return prefix === 0 ? 0 : (ip & (~0 << (32 - prefix))) >>> 0;
}

export function size(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function contains(c: Cidr, ip: number): boolean {
  return maskOf(ip, c.prefix) === c.base;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return maskOf(a.base, p) === maskOf(b.base, p);
}

export function formatCidr(c: Cidr): string {
  return `${numToIp(c.base)}/${c.prefix}`;
}

/** "10.32.0.5/12" for an address inside range `c`. */
export function withPrefix(ip: number, c: Cidr): string {
  return `${numToIp(ip)}/${c.prefix}`;
}

/**
 * The MAC a pod interface gets for an address: 0a:58 (locally administered, unicast)
 * followed by the four address bytes. Unique wherever the address is, so peers can
 * program neighbour entries from an address alone.
 */
export function macForIp(ip: number): string {
  const bytes = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255];
  return ["0a", "58", ...bytes.map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/** An address of either family in its canonical text (RFC 5952 for IPv6, as nft prints it). */
export function canonicalIp(ip: string): string {
  if (isIpv4(ip)) return ip;
  if (isIpv6(ip)) return new Address6(ip).correctForm();
  throw new CidrError(ip, "is not an IP address");
}

/** The family of an address: 4, 6, or undefined when it is neither. */
export function ipFamily(ip: string): 4 | 6 | undefined {
  return isIpv4(ip) ? 4 : isIpv6(ip) ? 6 : undefined;
}
