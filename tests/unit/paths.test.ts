/** Which data path each peer takes (net/agent/paths.ts) and what the VXLAN plan keeps for a sleeve peer. */
import { describe, expect, test } from "bun:test";
import { FAIL_AFTER, HEARTBEAT_MS, Paths, RECOVER_PONGS, type PeerRoute } from "../../net/agent/paths.ts";
import { desiredTables, FLOOD_MAC, sleeveMacs } from "../../net/encap/vxlan.ts";
import { ipToNum, macForIp } from "../../net/cidr.ts";

const direct = (name: string, testable = true): PeerRoute => ({
  name,
  nickname: `n-${name}`,
  via: name,
  viaNickname: `n-${name}`,
  testable,
});
const routed = (name: string, via: string): PeerRoute => ({
  name,
  nickname: `n-${name}`,
  via,
  viaNickname: `n-${via}`,
  testable: true,
});

/** A heartbeat every second from `from` to `to` (exclusive), answered when `answer` says so, then a decision. */
function run(p: Paths, routes: PeerRoute[], from: number, to: number, answer: (t: number) => boolean) {
  const changes = [];
  for (let t = from; t < to; t += HEARTBEAT_MS) {
    for (const r of routes) p.sent(r.name);
    changes.push(...p.update(t, routes));
    if (answer(t)) for (const r of routes) p.answered(r.name);
  }
  return changes;
}

describe("data paths", () => {
  test("a direct peer starts on the fast path and stays there while heartbeats are answered", () => {
    const p = new Paths("UDP 6784 (VXLAN)");
    expect(p.update(0, [direct("b")])).toEqual([]);
    expect(run(p, [direct("b")], 1000, 60_000, () => true)).toEqual([]);
    expect(p.get("b")?.path).toBe("fastdp");
  });

  test("unanswered heartbeats move it to the sleeve, with the port in the reason; answers in a row bring it back", () => {
    const p = new Paths("UDP 6784 (VXLAN)");
    p.update(0, [direct("b")]);
    const down = run(p, [direct("b")], 1000, 1000 + 2 * FAIL_AFTER * HEARTBEAT_MS, () => false);
    expect(down).toHaveLength(1);
    expect(down[0]!.peer.path).toBe("sleeve");
    expect(down[0]!.from?.path).toBe("fastdp");
    expect(down[0]!.peer.reason).toBe(
      "3 heartbeats in a row unanswered over the fast path: UDP 6784 (VXLAN) does not cross",
    );
    // the first is missed when the second is sent: the third miss is known at the fourth heartbeat
    expect(down[0]!.peer.since).toBe(1000 + FAIL_AFTER * HEARTBEAT_MS);
    const start = 20_000;
    const up = run(p, [direct("b")], start, start + 10_000, () => true);
    expect(up).toHaveLength(1);
    expect(up[0]!.peer).toMatchObject({ path: "fastdp", reason: "" });
    expect(up[0]!.peer.since).toBe(start + RECOVER_PONGS * HEARTBEAT_MS);
  });

  test("a stalled event loop is not a lost path: one late round of heartbeats counts once", () => {
    const p = new Paths("x");
    p.update(0, [direct("b")]);
    run(p, [direct("b")], 1000, 5000, () => true);
    // 4 s with no timer at all, then the next heartbeat: one miss at most
    p.sent("b");
    expect(p.update(9000, [direct("b")])).toEqual([]);
    p.answered("b");
    expect(run(p, [direct("b")], 10_000, 20_000, () => true)).toEqual([]);
    expect(p.get("b")?.path).toBe("fastdp");
  });

  test("answers with gaps do not count as in a row", () => {
    const p = new Paths("x");
    p.update(0, [direct("b")]);
    run(p, [direct("b")], 1000, 10_000, () => false);
    expect(p.get("b")?.path).toBe("sleeve");
    run(p, [direct("b")], 10_000, 40_000, (t) => t % 3000 === 0);
    expect(p.get("b")?.path).toBe("sleeve");
  });

  test("a peer that cannot be tested (no bridge address gossiped) stays on the fast path", () => {
    const p = new Paths("x");
    expect(run(p, [direct("b", false)], 0, 30_000, () => false)).toEqual([]);
    expect(p.get("b")?.path).toBe("fastdp");
  });

  test("a peer with no direct connection goes through its route's neighbour, and back when direct again", () => {
    const p = new Paths("x");
    p.update(0, [direct("b"), direct("c")]);
    const lost = p.update(1000, [direct("b"), routed("c", "b")]);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.peer).toMatchObject({ name: "c", path: "sleeve", via: "b", viaNickname: "n-b" });
    expect(lost[0]!.peer.reason).toBe("no direct connection to n-c: through n-b's sleeve");
    const back = p.update(2000, [direct("b"), direct("c")]);
    expect(back).toHaveLength(1);
    expect(back[0]!.peer).toMatchObject({ name: "c", path: "fastdp" });
    expect(back[0]!.from).toMatchObject({ via: "b" });
    // a new route through another neighbour is a change too
    p.update(3000, [direct("b"), direct("d"), routed("c", "b")]);
    expect(p.update(4000, [direct("b"), direct("d"), routed("c", "d")])[0]!.peer.via).toBe("d");
  });

  test("a peer seen first through a route is reported; an unreachable one is forgotten", () => {
    const p = new Paths("x");
    expect(p.update(0, [routed("c", "b"), direct("b")]).map((c) => c.peer.name)).toEqual(["c"]);
    p.update(1000, [direct("b")]);
    expect(p.get("c")).toBeUndefined();
    expect(p.all().map((x) => x.name)).toEqual(["b"]);
  });
});

describe("the VXLAN plan of a sleeve peer", () => {
  const pod = ipToNum("10.32.0.5");
  const bridge = ipToNum("10.32.0.1");
  const remote = { name: "b", ip: "198.18.0.2", pods: [bridge, pod], bridge };

  test("fast path: flood entry, every pod's MAC, neighbours", () => {
    const t = desiredTables([remote]);
    expect(t.fdb.map((f) => f.mac)).toEqual([FLOOD_MAC, macForIp(bridge), macForIp(pod)]);
    expect(t.neigh).toHaveLength(2);
    expect(sleeveMacs([remote])).toEqual([]);
  });

  test("sleeve: only the bridge's entry stays with VXLAN (heartbeats); the pods' MACs go to the sleeve", () => {
    const t = desiredTables([{ ...remote, path: "sleeve" }]);
    expect(t.fdb).toEqual([{ mac: macForIp(bridge), dst: "198.18.0.2" }]);
    expect(t.neigh).toHaveLength(2);
    expect(sleeveMacs([{ ...remote, path: "sleeve" }])).toEqual([{ mac: macForIp(pod), peer: "198.18.0.2" }]);
  });
});
