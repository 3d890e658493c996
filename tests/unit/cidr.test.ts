import { describe, expect, test } from "bun:test";
import {
  contains,
  formatCidr,
  ipToNum,
  macForIp,
  numToIp,
  overlaps,
  parseCidr,
  parseRange,
  rangeHolds,
  rangesOverlap,
  formatRange,
  isIpv4,
  isIpv6,
  size,
  CidrError,
} from "../../net/cidr.ts";

describe("cidr", () => {
  test("parses and formats", () => {
    const c = parseCidr("10.32.0.0/12");
    expect(formatCidr(c)).toBe("10.32.0.0/12");
    expect(size(c)).toBe(1 << 20);
    expect(contains(c, ipToNum("10.47.255.255"))).toBe(true);
    expect(contains(c, ipToNum("10.48.0.0"))).toBe(false);
    expect(numToIp(ipToNum("255.255.255.255"))).toBe("255.255.255.255");
  });

  test.each([
    "10.32.0.0",
    "10.32.0.0/33",
    "10.32.0/12",
    "300.1.1.1/8",
    "a.b.c.d/8",
    "",
    "10.32.0.0/12/1",
    " 10.32.0.0/12",
    "010.32.0.0/12",
  ])("refuses %p, naming it", (s) => {
    expect(() => parseCidr(s)).toThrow(CidrError);
    try {
      parseCidr(s);
    } catch (e) {
      expect((e as Error).message).toContain(JSON.stringify(s));
    }
  });

  test("refuses host bits unless told not to", () => {
    expect(() => parseCidr("10.32.0.1/12")).toThrow(/host bits/);
    expect(formatCidr(parseCidr("10.32.0.1/12", false))).toBe("10.32.0.0/12");
  });

  test("overlaps", () => {
    expect(overlaps(parseCidr("10.32.0.0/12"), parseCidr("10.40.0.0/16"))).toBe(true);
    expect(overlaps(parseCidr("10.32.0.0/12"), parseCidr("10.96.0.0/12"))).toBe(false);
    expect(overlaps(parseCidr("0.0.0.0/0"), parseCidr("198.18.0.0/15"))).toBe(true);
  });

  test("MAC from address is locally administered unicast and unique per address", () => {
    expect(macForIp(ipToNum("10.32.0.5"))).toBe("0a:58:0a:20:00:05");
    const first = parseInt(macForIp(ipToNum("10.32.0.5")).slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
    expect(macForIp(ipToNum("10.32.1.5"))).not.toBe(macForIp(ipToNum("10.32.0.5")));
  });

  test("ranges of either family: parse, format, hold, overlap", () => {
    const v6 = parseRange("fd00:10:96::/112");
    expect(formatRange(v6)).toBe("fd00:10:96::/112");
    expect(rangeHolds(v6, "fd00:10:96::a")).toBe(true);
    expect(rangeHolds(v6, "fd00:10:97::a")).toBe(false);
    expect(rangeHolds(v6, "10.96.0.1")).toBe(false);
    expect(rangeHolds(parseRange("10.96.0.0/12"), "10.96.0.1")).toBe(true);
    expect(rangeHolds(parseRange("10.96.0.0/12"), "not-an-ip")).toBe(false);
    expect(rangesOverlap(parseRange("fd00::/8"), v6)).toBe(true);
    expect(rangesOverlap(parseRange("10.0.0.0/8"), v6)).toBe(false);
    expect(formatRange(parseRange("fd00::1/64", false))).toBe("fd00::/64");
    expect(() => parseRange("fd00::1/64")).toThrow(/host bits set \(the range would be fd00::\/64\)/);
    expect(() => parseRange("fd00::/129")).toThrow(/prefix length over 128/);
    expect(() => parseRange("10.0.0.0/33")).toThrow(/prefix length over 32/);
  });

  test("the pod range is IPv4: an IPv6 range is refused with the reason", () => {
    expect(() => parseCidr("fd00::/64")).toThrow(/IPv6 range; pod ranges are IPv4 for now/);
  });

  test("addresses: strict forms only", () => {
    expect(isIpv4("10.32.0.1")).toBe(true);
    expect(isIpv4("10.32.0.1/32")).toBe(false);
    expect(isIpv4("010.32.0.1")).toBe(false);
    expect(isIpv4("10.32.0")).toBe(false);
    expect(isIpv6("fd00::1")).toBe(true);
    expect(isIpv6("10.32.0.1")).toBe(false);
    expect(() => ipToNum("fd00::1")).toThrow('"fd00::1" is not an IPv4 address');
  });
});
