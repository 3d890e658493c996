import { describe, expect, test } from "bun:test";
import { planBridge } from "../../net/agent/bridge.ts";
import { overlayMtu } from "../../net/agent/mtu.ts";
import type { Link, Route } from "../../net/host/host.ts";

const want = { name: "weave", mtu: 1450, mac: "0a:58:0a:20:00:01", cidr: "10.32.0.1/12" };
const link = (o: Partial<Link>): Link => ({
  index: 5,
  name: "weave",
  mtu: 1450,
  mac: want.mac,
  up: true,
  group: 0,
  ...o,
});

describe("bridge plan", () => {
  test("missing bridge: create and address it", () => {
    expect(planBridge(want, undefined, [])).toEqual([
      { op: "create", name: "weave", mtu: 1450, mac: want.mac },
      { op: "add-addr", cidr: "10.32.0.1/12" },
    ]);
  });
  test("as wanted: nothing to do", () => {
    expect(planBridge(want, link({}), ["10.32.0.1/12"])).toEqual([]);
  });
  test("drifted: fix only what differs", () => {
    expect(planBridge(want, link({ mtu: 1500, up: false }), ["10.40.0.1/12"])).toEqual([
      { op: "set-mtu", mtu: 1450 },
      { op: "up" },
      { op: "del-addr", cidr: "10.40.0.1/12" },
      { op: "add-addr", cidr: "10.32.0.1/12" },
    ]);
  });
});

describe("overlay MTU", () => {
  const links = [
    link({ index: 1, name: "lo", mtu: 65536 }),
    link({ index: 2, name: "eth0", mtu: 9001 }),
    link({ index: 3, name: "eth1", mtu: 1500 }),
    link({ index: 4, name: "weave", mtu: 1376 }),
  ];
  const route = (dev: number): Route => ({
    dst: "0.0.0.0/0",
    gw: "198.18.0.1",
    dev,
    table: 254,
    protocol: 3,
    scope: 0,
  });
  const ignore = (l: Link) => l.name === "weave";
  test("from the default route's interface", () => {
    expect(overlayMtu(links, [route(2)], ignore).mtu).toBe(8951);
  });
  test("else the smallest up interface, ignoring ours", () => {
    expect(overlayMtu(links, [], ignore).mtu).toBe(1450);
  });
  test("else a safe fallback", () => {
    expect(overlayMtu([links[0]!], [], ignore).mtu).toBe(1376);
  });
});
