/** The host layer against the real kernel, in namespaces this test makes and removes. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openHost, type NetHost } from "../../net/host/host.ts";
import { NetlinkError, EEXIST } from "../../net/host/netlink.ts";
import { checkNetnsPath, createNamedNetns, deleteNamedNetns, netnsPath } from "../../net/host/netns.ts";
import { canRunHost, uniqueName } from "../support/env.ts";
import { writeFileSync, rmSync } from "node:fs";

describe.skipIf(!canRunHost)("host layer (rtnetlink over bun:ffi)", () => {
  const a = `${uniqueName("h")}a`;
  const b = `${uniqueName("h")}b`;
  let h: NetHost;
  let c: NetHost;

  beforeAll(() => {
    createNamedNetns(a);
    createNamedNetns(b);
    h = openHost(netnsPath(a));
    c = openHost(netnsPath(b));
  });
  afterAll(() => {
    h?.close();
    c?.close();
    deleteNamedNetns(a);
    deleteNamedNetns(b);
  });

  test("a bridge with MAC, MTU and address", () => {
    const br = h.addBridge("weave", { mtu: 1400, mac: "0a:58:0a:20:00:01" });
    expect(br).toMatchObject({ name: "weave", kind: "bridge", mtu: 1400, mac: "0a:58:0a:20:00:01", up: true });
    h.addAddr(br.index, "10.32.0.1/12");
    expect(h.addrs(br.index)).toEqual([{ index: br.index, cidr: "10.32.0.1/12" }]);
    expect(() => h.addAddr(br.index, "10.32.0.1/12")).toThrow(NetlinkError);
    expect(h.link("nope")).toBeUndefined();
  });

  test("a veth whose peer is created in another namespace, enslaved, addressed and routed", () => {
    const br = h.link("weave")!;
    const v = h.addVeth({
      name: "vethwepltest1",
      mtu: 1400,
      peer: { name: "eth0", netns: netnsPath(b), mac: "0a:58:0a:20:00:02" },
    });
    h.setLink(v.index, { master: br.index, up: true });
    h.setHairpin(v.index, true);
    expect(h.link("vethwepltest1")).toMatchObject({ master: br.index, up: true, mtu: 1400 });
    const e = c.link("eth0")!;
    expect(e).toMatchObject({ mac: "0a:58:0a:20:00:02", mtu: 1400 });
    c.setLink(e.index, { up: true });
    c.addAddr(e.index, "10.32.0.2/12");
    c.addRoute({ dst: "0.0.0.0/0", gw: "10.32.0.1", dev: e.index });
    expect(c.routes().find((r) => r.dst === "0.0.0.0/0")).toMatchObject({ gw: "10.32.0.1", dev: e.index, table: 254 });
    const ping = Bun.spawnSync(["nsenter", `--net=${netnsPath(b)}`, "ping", "-c", "1", "-W", "2", "10.32.0.1"]);
    expect(ping.exitCode).toBe(0);
    expect(c.delRoute({ dst: "0.0.0.0/0" })).toBe(true);
    expect(c.delRoute({ dst: "0.0.0.0/0" })).toBe(false);
  });

  test("creating an existing link fails with EEXIST and leaves it alone", () => {
    try {
      h.addVeth({ name: "vethwepltest1", mtu: 1400, peer: { name: "x1" } });
      throw new Error("accepted");
    } catch (e) {
      expect(e).toBeInstanceOf(NetlinkError);
      expect((e as NetlinkError).errno).toBe(EEXIST);
    }
    expect(h.link("vethwepltest1")?.up).toBe(true);
  });

  test("vxlan with flood FDB entries (appended, one per peer), neighbours", () => {
    const br = h.link("weave")!;
    const vx = h.addVxlan({ name: "vxlan-6784", vni: 0x5a, port: 6784, mtu: 1400, master: br.index });
    expect(vx).toMatchObject({ kind: "vxlan", master: br.index });
    h.addFdb({ dev: vx.index, mac: "00:00:00:00:00:00", dst: "198.18.0.12" });
    h.addFdb({ dev: vx.index, mac: "00:00:00:00:00:00", dst: "198.18.0.13" });
    h.addFdb({ dev: vx.index, mac: "0a:58:0a:20:00:09", dst: "198.18.0.13" });
    const dsts = h
      .fdb(vx.index)
      .filter((f) => f.dst)
      .map((f) => `${f.mac}>${f.dst}`)
      .sort();
    expect(dsts).toEqual([
      "00:00:00:00:00:00>198.18.0.12",
      "00:00:00:00:00:00>198.18.0.13",
      "0a:58:0a:20:00:09>198.18.0.13",
    ]);
    expect(h.delFdb({ dev: vx.index, mac: "00:00:00:00:00:00", dst: "198.18.0.12" })).toBe(true);
    // The kernel answers success for a remote it does not have when the MAC has others.
    h.delFdb({ dev: vx.index, mac: "00:00:00:00:00:00", dst: "198.18.0.12" });
    expect(
      h
        .fdb(vx.index)
        .filter((f) => f.mac === "00:00:00:00:00:00" && f.dst)
        .map((f) => f.dst),
    ).toEqual(["198.18.0.13"]);
    expect(h.delFdb({ dev: vx.index, mac: "0a:58:0a:20:00:77", dst: "198.18.0.12" })).toBe(false);
    h.setNeighbour({ dev: br.index, ip: "10.32.0.9", mac: "0a:58:0a:20:00:09" });
    h.setNeighbour({ dev: br.index, ip: "10.32.0.9", mac: "0a:58:0a:20:00:09" });
    expect(h.neighbours(br.index).find((n) => n.ip === "10.32.0.9")).toMatchObject({
      mac: "0a:58:0a:20:00:09",
      state: 0x80,
    });
    expect(h.delNeighbour({ dev: br.index, ip: "10.32.0.9" })).toBe(true);
    expect(h.delNeighbour({ dev: br.index, ip: "10.32.0.9" })).toBe(false);
  });

  test("a port entry is sticky: a frame from its MAC on another port does not move it, as it moves a plain static one", () => {
    const br = h.link("weave")!;
    const mac = "0a:58:0a:63:00:07";
    const port1 = h.addVeth({ name: "vstk1", mtu: 1400, peer: { name: "stk1", netns: netnsPath(b) } });
    const port2 = h.addVeth({ name: "vstk2", mtu: 1400, peer: { name: "stk2", netns: netnsPath(b), mac } });
    for (const p of [port1, port2]) h.setLink(p.index, { master: br.index, up: true });
    const sender = c.link("stk2")!;
    c.setLink(sender.index, { up: true });
    c.addAddr(sender.index, "10.99.0.2/24");
    const portOf = () => h.fdb().find((f) => f.mac === mac && f.master === br.index)?.dev;
    /** An ARP request from `mac`, which arrives at the bridge on port 2. */
    const sendFromMac = () =>
      Bun.spawnSync(["nsenter", `--net=${netnsPath(b)}`, "ping", "-c", "1", "-W", "1", "-I", "stk2", "10.99.0.9"]);
    const plain = Bun.spawnSync([
      "nsenter",
      `--net=${netnsPath(a)}`,
      "bridge",
      "fdb",
      "replace",
      mac,
      "dev",
      "vstk1",
      "master",
      "static",
    ]);
    expect(plain.exitCode).toBe(0);
    expect(h.fdb(port1.index).find((f) => f.mac === mac)?.sticky).toBe(false);
    sendFromMac();
    expect(portOf()).toBe(port2.index);
    h.addPortFdb({ port: port1.index, mac });
    expect(h.fdb(port1.index).find((f) => f.mac === mac)?.sticky).toBe(true);
    sendFromMac();
    expect(portOf()).toBe(port1.index);
    expect(h.delPortFdb({ port: port1.index, mac })).toBe(true);
    expect(h.delPortFdb({ port: port1.index, mac })).toBe(false);
    h.delLink("vstk1");
    h.delLink("vstk2");
  });

  test("isolated ports: a broadcast from one reaches the plain port but not the other isolated one", async () => {
    const br = h.link("weave")!;
    const names = ["viso1", "viso2", "viso3"];
    const ports = names.map((name, i) =>
      h.addVeth({
        name,
        mtu: 1400,
        peer: { name: `iso${i + 1}`, netns: netnsPath(b), mac: `0a:58:0a:63:01:0${i + 1}` },
      }),
    );
    for (const p of ports) h.setLink(p.index, { master: br.index, up: true });
    h.setBridgePort(ports[0]!.index, { isolated: true });
    h.setBridgePort(ports[1]!.index, { isolated: true });
    for (const i of [1, 2, 3]) c.setLink(c.link(`iso${i}`)!.index, { up: true });
    c.addAddr(c.link("iso1")!.index, "10.99.1.1/24");
    /** ARP requests seen on `dev` (in namespace b) while iso1 asks for an address no one has. */
    const seenOn = async (dev: string) => {
      const cap = Bun.spawn(
        ["nsenter", `--net=${netnsPath(b)}`, "tcpdump", "-i", dev, "-n", "-l", "-c", "1", "arp and src host 10.99.1.1"],
        { stdout: "pipe", stderr: "pipe" },
      );
      try {
        await Bun.sleep(500);
        Bun.spawnSync(["nsenter", `--net=${netnsPath(b)}`, "ping", "-c", "1", "-W", "1", "-I", "iso1", "10.99.1.9"]);
        await Bun.sleep(300);
      } finally {
        cap.kill("SIGTERM");
      }
      return (await new Response(cap.stdout).text()).includes("Request who-has 10.99.1.9");
    };
    expect(await seenOn("iso3")).toBe(true);
    expect(await seenOn("iso2")).toBe(false);
    for (const name of names) h.delLink(name);
  });

  test("sysctls are the namespace's own", () => {
    h.setSysctl("net.ipv4.ip_forward", "1");
    expect(h.sysctl("net.ipv4.ip_forward")).toBe("1");
    expect(c.sysctl("net.ipv4.ip_forward")).toBe("0");
  });

  test("group delete removes every link of the group and their peers, and only those", () => {
    const l1 = h.addVeth({ name: "vg1", mtu: 1500, peer: { name: "vg1p" } });
    const l2 = h.addVeth({ name: "vg2", mtu: 1500, peer: { name: "vg2p" } });
    h.setLink(l1.index, { group: 0x7765 });
    h.setLink(l2.index, { group: 0x7765 });
    expect(h.link("vg1")!.group).toBe(0x7765);
    h.delLinkGroup(0x7765);
    expect(["vg1", "vg1p", "vg2", "vg2p"].map((n) => h.link(n))).toEqual([undefined, undefined, undefined, undefined]);
    expect(h.link("vethwepltest1")).toBeDefined();
    h.delLinkGroup(0x7765);
  });

  test("deleting the host end removes the pair; a second delete says it was gone", () => {
    expect(h.delLink("vethwepltest1")).toBe(true);
    expect(h.delLink("vethwepltest1")).toBe(false);
    expect(c.link("eth0")).toBeUndefined();
  });

  test("only real namespaces pass the netns check", () => {
    expect(checkNetnsPath(netnsPath(a))).toEqual({ ok: true });
    expect(checkNetnsPath(`/proc/${process.pid}/ns/net`)).toEqual({ ok: true });
    const f = `/tmp/${a}-plain`;
    writeFileSync(f, "x");
    try {
      expect(checkNetnsPath(f)).toMatchObject({
        ok: false,
        reason: expect.stringContaining("not a network namespace"),
      });
    } finally {
      rmSync(f);
    }
    expect(checkNetnsPath("/tmp")).toMatchObject({ ok: false });
    expect(checkNetnsPath(`/var/run/netns/${a}-missing`)).toMatchObject({ ok: false, reason: "does not exist" });
    expect(checkNetnsPath("relative")).toMatchObject({ ok: false });
  });
});
