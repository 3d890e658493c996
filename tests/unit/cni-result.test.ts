// biome-ignore-all lint/suspicious/noExplicitAny: results and manifests are read as loose JSON, field by field
import { describe, expect, test } from "bun:test";
import { chainResult, parseResult, resultForVersion, type Result } from "../../net/cni/result.ts";

const ours: Result = {
  interfaces: [
    { name: "weave", mac: "0a:58:0a:20:00:01" },
    { name: "vethwepl1234567", mac: "aa:bb:cc:dd:ee:ff", mtu: 1450 },
    { name: "eth0", mac: "0a:58:0a:20:00:05", mtu: 1450, sandbox: "/var/run/netns/p" },
  ],
  ips: [{ address: "10.32.0.5/12", gateway: "10.32.0.1", interface: 2 }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.32.0.1" }],
};

describe("results", () => {
  test.each(["0.3.0", "0.3.1", "0.4.0"])("%s carries ips[].version and no mtu", (v) => {
    const r = resultForVersion(ours, v) as any;
    expect(r.cniVersion).toBe(v);
    expect(r.ips[0]).toEqual({ version: "4", address: "10.32.0.5/12", gateway: "10.32.0.1", interface: 2 });
    expect(r.interfaces[2]).toEqual({ name: "eth0", mac: "0a:58:0a:20:00:05", sandbox: "/var/run/netns/p" });
  });

  test("1.0.0 drops ips[].version; 1.1.0 adds interface mtu", () => {
    const r1 = resultForVersion(ours, "1.0.0") as any;
    expect(r1.ips[0].version).toBeUndefined();
    expect(r1.interfaces[2].mtu).toBeUndefined();
    const r11 = resultForVersion(ours, "1.1.0") as any;
    expect(r11.interfaces[2].mtu).toBe(1450);
    expect(r11.dns).toBeUndefined();
  });

  test("a prevResult of any version reads back into the same shape", () => {
    for (const v of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
      const back = parseResult(JSON.parse(JSON.stringify(resultForVersion(ours, v))));
      expect(back.ips).toEqual(ours.ips);
      expect(back.routes).toEqual(ours.routes);
      expect(back.interfaces.map((i) => i.name)).toEqual(["weave", "vethwepl1234567", "eth0"]);
    }
  });

  test("chaining appends after the previous plugin's result and shifts interface indexes", () => {
    const prev: Result = {
      interfaces: [{ name: "lo", sandbox: "/x" }],
      ips: [{ address: "127.0.0.1/8", interface: 0 }],
      routes: [],
      dns: { nameservers: ["10.96.0.10"] },
    };
    const c = chainResult(prev, ours);
    expect(c.interfaces.map((i) => i.name)).toEqual(["lo", "weave", "vethwepl1234567", "eth0"]);
    expect(c.ips[1]!.interface).toBe(3);
    expect(c.ips[0]!.interface).toBe(0);
    expect(c.dns).toEqual({ nameservers: ["10.96.0.10"] });
    expect(chainResult(undefined, ours)).toBe(ours);
  });
});
