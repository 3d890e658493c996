/**
 * IPv4 addresses and ranges as 32-bit numbers: strict dotted-quad parsing and the
 * integer math the allocator needs. (Not `ip-address`: loading it costs the plugin
 * ~5 ms of start-up on every CNI call, more than everything else it does.)
 */

export type Cidr = { base: number; prefix: number };

export class CidrError extends Error {
  constructor(
    readonly value: string,
    reason: string,
  ) {
    super(`"${value}" ${reason}`);
    this.name = "CidrError";
  }
}

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(s: string): boolean {
  return QUAD.test(s);
}

export function ipToNum(ip: string): number {
  if (!QUAD.test(ip)) throw new CidrError(ip, "is not an IPv4 address");
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

export function numToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Parse "10.32.0.0/12"; `strict` refuses host bits set below the prefix. */
export function parseCidr(s: string, strict = true): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(s);
  if (!m || !QUAD.test(m[1]!)) throw new CidrError(s, "is not an IPv4 CIDR (like 10.32.0.0/12)");
  const prefix = Number(m[2]);
  if (prefix > 32) throw new CidrError(s, "has a prefix length over 32");
  const ip = ipToNum(m[1]!);
  const base = maskOf(ip, prefix);
  if (strict && base !== ip)
    throw new CidrError(s, `has host bits set (the range would be ${numToIp(base)}/${prefix})`);
  return { base, prefix };
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
  return [
    "0a",
    "58",
    ...numToIp(ip)
      .split(".")
      .map((o) => Number(o).toString(16).padStart(2, "0")),
  ].join(":");
}
