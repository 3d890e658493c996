import { describe, expect, test } from "bun:test";
import { Allocator, RangeFullError } from "../../net/ipam/allocator.ts";
import { ipToNum, numToIp, parseCidr } from "../../net/cidr.ts";
import { memoryStore } from "../support/fake-host.ts";

describe("allocator", () => {
  test("hands out distinct addresses, skipping network and broadcast", () => {
    const a = new Allocator(parseCidr("10.0.0.0/29"), memoryStore());
    const got = Array.from({ length: 6 }, (_, i) => numToIp(a.allocate(`c${i}`, "eth0").entry.address));
    expect(got).toEqual(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    expect(() => a.allocate("c7", "eth0")).toThrow(RangeFullError);
    expect(a.capacity).toBe(6);
  });

  test("the same attachment gets its address back, marked not created", () => {
    const a = new Allocator(parseCidr("10.32.0.0/12"), memoryStore());
    const first = a.allocate("c1", "eth0");
    const again = a.allocate("c1", "eth0");
    expect(first.created).toBe(true);
    expect(again.created).toBe(false);
    expect(again.entry.address).toBe(first.entry.address);
    expect(a.allocate("c1", "net1").entry.address).not.toBe(first.entry.address);
  });

  test("release by attachment or by container; next-fit does not reuse at once", () => {
    const a = new Allocator(parseCidr("10.0.0.0/28"), memoryStore());
    const x = a.allocate("c1", "eth0").entry.address;
    a.allocate("c1", "net1");
    a.allocate("c2", "eth0");
    expect(a.release("c1", "eth0").map((e) => e.address)).toEqual([x]);
    expect(a.release("nope", "eth0")).toEqual([]);
    expect(a.allocate("c3", "eth0").entry.address).not.toBe(x);
    expect(a.release("c1").length).toBe(1);
    expect(a.lookup("c1")).toEqual([]);
  });

  test("survives a restart through its store", () => {
    const store = memoryStore();
    const a = new Allocator(parseCidr("10.32.0.0/12"), store);
    const addrs = Array.from({ length: 50 }, (_, i) => a.allocate(`c${i}`, "eth0").entry.address);
    a.release("c10", "eth0");
    const b = new Allocator(parseCidr("10.32.0.0/12"), store);
    expect(b.active).toBe(49);
    expect(b.lookup("c3")[0]!.address).toBe(addrs[3]!);
    const fresh = new Set(Array.from({ length: 100 }, (_, i) => b.allocate(`n${i}`, "eth0").entry.address));
    for (const [i, x] of addrs.entries()) if (i !== 10) expect(fresh.has(x)).toBe(false);
  });

  test("ignores stored entries outside the range", () => {
    const store = memoryStore();
    store.put({ containerId: "old", ifname: "eth0", address: ipToNum("192.168.0.5"), createdAt: 0 });
    expect(new Allocator(parseCidr("10.32.0.0/12"), store).active).toBe(0);
  });
});
