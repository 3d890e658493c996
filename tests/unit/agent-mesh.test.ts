/**
 * Several agents in one process over an in-memory network, a virtual clock and in-memory
 * hosts: they split the range by consensus, program each other's pods into their VXLAN
 * tables, hand space to a newcomer, and take over a deleted node's space exactly once.
 */
import { describe, expect, test } from "bun:test";
import { Agent } from "../../net/agent/agent.ts";
import { parseCidr } from "../../net/cidr.ts";
import { spanSize } from "../../net/ipam/ring.ts";
import { FakeWorld, memoryStore } from "../support/fake-host.ts";
import { MemNet, VirtualClock } from "../support/mem-net.ts";

function cluster(range = "10.40.0.0/24") {
  const clock = new VirtualClock();
  const net = new MemNet(clock);
  const logs: string[] = [];
  const claims: string[] = [];
  const claimed = new Map<string, string>();
  const agents: Agent[] = [];
  const ip = (i: number) => `198.18.0.${10 + i}`;
  const make = (i: number, peers: number[], kube = false) => {
    const world = new FakeWorld();
    world
      .ns("root")
      .links.set("eth0", { index: 99, name: "eth0", mtu: 1500, mac: "02:aa:00:00:00:01", up: true, group: 0 });
    const a = new Agent(
      {
        range: parseCidr(range),
        bridge: "weave",
        nickname: `n${i}`,
        dataDir: `/d${i}`,
        peers: kube ? [] : peers.map(ip),
        advertise: ip(i),
        meshListen: `${ip(i)}:6783`,
        kube,
      },
      {
        host: world.host(),
        openHost: (ns) => world.host(ns),
        checkNetns: () => ({ ok: true }),
        store: memoryStore(),
        log: (m) => logs.push(`n${i}: ${m}`),
        defer: () => {},
        transport: net.transport(`${ip(i)}:6783`),
        sched: clock,
        machineId: `m${i}`,
        reclaimLock: async (dead, heir) => {
          claims.push(`${heir}>${dead}`);
          if (!claimed.has(dead)) claimed.set(dead, heir);
          return claimed.get(dead) === heir;
        },
      },
    );
    a.start();
    agents.push(a);
    return { a, world };
  };
  return { clock, net, logs, claims, agents, make, ip };
}

describe("agents over an in-memory network", () => {
  test("three agents split the range by consensus and program each other's pods", async () => {
    const c = cluster();
    const made = [1, 2, 3].map((i) =>
      c.make(
        i,
        [1, 2, 3].filter((j) => j !== i),
      ),
    );
    await c.clock.run(5000);
    const sizes = c.agents.map((a) => spanSize(a.ipam.owned)).sort();
    expect(sizes).toEqual([85, 85, 86]);
    for (const a of c.agents) expect(a.ready).toBe(true);
    // a pod on n1 shows up in n2's VXLAN tables, MAC derived from its address
    const pod = c.agents[0]!.allocator.allocate("pod1", "eth0").entry.address;
    await c.clock.run(3000);
    const remote = c.agents[1]!.remotes().find((r) => r.ip === c.ip(1))!;
    expect(remote.pods).toContain(pod);
    void made;
  });

  test("a newcomer joins the ring, asks, and is given space without stalling", async () => {
    const c = cluster();
    c.make(1, [2]);
    c.make(2, [1]);
    await c.clock.run(3000);
    const { a: late } = c.make(3, [1]);
    await c.clock.run(5000);
    expect(late.ready).toBe(true);
    expect(spanSize(late.ipam.owned)).toBeGreaterThan(0);
    // exactly one donor gave: both rank donors on what was gossiped, and agree
    expect(late.ipam.acks).toHaveLength(1);
    const total = c.agents.reduce((n, a) => n + spanSize(a.ipam.owned), 0);
    expect(total).toBe(256);
  });

  test("a deleted Node's peer: the heir claims its space once (ConfigMap CAS) and takes it", async () => {
    const c = cluster();
    const nodes = [1, 2, 3].map((i) => c.make(i, [], true));
    for (const { a } of nodes) a.setPeers([1, 2, 3].map(c.ip).filter((x) => x !== a.advertise));
    await c.clock.run(5000);
    expect(c.agents.map((a) => spanSize(a.ipam.owned)).sort()).toEqual([85, 85, 86]);
    const dead = nodes[2]!.a;
    const deadName = dead.name;
    const deadSize = spanSize(dead.ipam.owned);
    dead.stop();
    c.net.kill(`${c.ip(3)}:6783`);
    await c.clock.run(10000);
    // the Node is deleted from the cluster: the survivors' Node lists drop it
    for (const { a } of nodes.slice(0, 2)) a.setPeers([c.ip(1), c.ip(2)].filter((x) => x !== a.advertise));
    await c.clock.run(10000);
    const [a1, a2] = [nodes[0]!.a, nodes[1]!.a];
    expect(spanSize(a1.ipam.owned) + spanSize(a2.ipam.owned)).toBe(256);
    expect(c.claims.filter((x) => x.endsWith(`>${deadName}`))).toHaveLength(1);
    const heir = [a1, a2].find((a) => a.ipam.reclaimed.includes(deadName))!;
    expect(heir).toBeDefined();
    expect(c.logs.some((l) => l.includes(`took over ${deadSize} addresses of removed peer ${deadName}`))).toBe(true);
  });
});
