/**
 * The mesh on the lab: agents on 3 and 5 nodes find each other and carry pod traffic
 * across nodes in kernel VXLAN; they survive an agent killed and restarted and a node
 * cut off and healed; full-size frames cross without fragmentation; nodes reach pods;
 * pods reach the world outside, masqueraded to their node's address.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eventually } from "../support/wait.ts";
import { canRunHost, WEAVE, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { labAgent, labCut, labDown, labUp, meshViews, pingMatrix, waitMesh } from "../../net/lab/lab.ts";
import { readLab, type LabState } from "../../net/lab/state.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { pidAlive } from "../../net/host/process.ts";
import { netnsPath } from "../../net/host/netns.ts";
import { FADE_MS } from "../../net/agent/agent.ts";

const ping = (from: string, ip: string, extra: string[] = []) =>
  inNs(from, ["ping", "-c", "1", "-W", "2", ...extra, ip]).code === 0;

function fdbDsts(node: string): string[] {
  const out = inNs(node, ["bridge", "fdb", "show", "dev", "vxlan-6784"]).stdout;
  return [...out.matchAll(/^00:00:00:00:00:00 dst (\S+)/gm)].map((m) => m[1]!).sort();
}

describe.skipIf(!canRunHost)("mesh on a 5-node lab", () => {
  let s: LabState;
  const name = uniqueName("m");
  beforeAll(async () => {
    s = await labUp(name, 5, 1, tools);
  }, 120_000);
  afterAll(async () => {
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("every pod pings every other pod", () => {
    const failed = pingMatrix(s).filter((p) => !p.ok);
    expect(failed).toEqual([]);
  });

  test("each node floods to exactly the other four", () => {
    for (const n of s.nodes)
      expect(fdbDsts(n.netns)).toEqual(
        s.nodes
          .filter((o) => o !== n)
          .map((o) => o.ip)
          .sort(),
      );
  });
});

describe.skipIf(!canRunHost)("mesh on a 3-node lab", () => {
  let s: LabState;
  const name = uniqueName("m");
  beforeAll(async () => {
    s = await labUp(name, 3, 2, tools);
  }, 120_000);
  afterAll(async () => {
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("every pod pings every other pod", () => {
    expect(pingMatrix(s).filter((p) => !p.ok)).toEqual([]);
  });

  test("a node reaches pods on every node", () => {
    for (const n of s.nodes) for (const p of s.pods) expect(ping(n.netns, p.ip), `${n.name} -> ${p.name}`).toBe(true);
  });

  test("a don't-fragment ping at the full pod MTU crosses nodes with offloads off", () => {
    const [a, b] = [s.pods.find((p) => p.node.endsWith("-n1"))!, s.pods.find((p) => p.node.endsWith("-n2"))!];
    for (const p of [a, b]) {
      const pod = p.name;
      expect(
        inNs(pod, ["cat", "/sys/class/net/eth0/mtu"]).stdout.trim() === "1450" ||
          inNs(pod, ["ip", "link", "show", "eth0"]).stdout.includes("mtu 1450"),
      ).toBe(true);
      inNs(pod, ["ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off"]);
    }
    expect(ping(a.name, b.ip, ["-M", "do", "-s", "1422"])).toBe(true);
    // one byte more does not fit: the MTU is really 1450, not silently larger
    const tooBig = inNs(a.name, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1423", b.ip]);
    expect(tooBig.code).not.toBe(0);
  });

  test("a pod reaches a host outside the cluster, which sees the node's address", async () => {
    const outside = s.outside!;
    const server = Bun.spawn(
      [
        "nsenter",
        `--net=${netnsPath(outside.netns)}`,
        process.execPath,
        "-e",
        `const s = Bun.listen({ hostname: "${outside.ip}", port: 8080, socket: { open(k) { console.log(k.remoteAddress); k.end(); setTimeout(() => process.exit(0), 50); }, data() {} } }); setTimeout(() => process.exit(1), 15000);`,
      ],
      { stdout: "pipe" },
    );
    try {
      await Bun.sleep(300);
      const pod = s.pods.find((p) => p.node.endsWith("-n2"))!;
      const c = inNs(pod.name, ["bash", "-c", `exec 3<>/dev/tcp/${outside.ip}/8080; cat <&3`]);
      expect(c.code, c.stderr).toBe(0);
      await server.exited;
      const seen = (await new Response(server.stdout).text()).trim();
      expect(seen).toBe(s.nodes.find((n) => n.name === pod.node)!.ip);
    } finally {
      server.kill();
    }
  });

  test("kill -9 an agent: its pods stay reachable while it is away, its entries fade after FADE_MS; restarted, it rejoins with its pods' addresses", async () => {
    const victim = s.nodes[2]!;
    const podsBefore = s.pods.filter((p) => p.node === victim.name).map((p) => p.ip);
    process.kill(victim.agentPid, "SIGKILL");
    const survivors = s.nodes.filter((n) => n !== victim);
    const alive = s.pods.filter((p) => p.node !== victim.name);
    const victims = s.pods.filter((p) => p.node === victim.name);
    // its node's kernel datapath runs on without it: an agent restart (an upgrade) cuts nothing
    await Bun.sleep(1000);
    for (const a of alive) for (const b of victims) expect(ping(a.name, b.ip), `${a.name} -> ${b.name}`).toBe(true);
    // gone for longer than FADE_MS, it is dropped from the others' datapath
    const dropped = () => survivors.every((n) => !fdbDsts(n.netns).includes(victim.ip));
    expect(await eventually(dropped, FADE_MS + 10_000)).toBe(true);
    for (const a of alive)
      for (const b of alive) if (a !== b) expect(ping(a.name, b.ip), `${a.name} -> ${b.name}`).toBe(true);

    expect(await eventually(() => !pidAlive(victim.agentPid), 10000)).toBe(true);
    await labAgent(name, "start", victim.name, tools);
    s = readLab(name)!;
    await waitMesh(tools, s);
    expect(await eventually(() => survivors.every((n) => fdbDsts(n.netns).includes(victim.ip)))).toBe(true);
    const held = inNs(victim.netns, [WEAVE, "status", "ipam"]).stdout;
    for (const ip of podsBefore) expect(held).toContain(`${ip}/12`);
    expect(await eventually(() => pingMatrix(s).every((p) => p.ok), 15000)).toBe(true);
  }, 90_000);

  test("a node cut off with nftables is lost, and after healing the mesh converges again", async () => {
    const cut = s.nodes[1]!;
    labCut(name, cut.name, true);
    expect(
      await eventually(
        () =>
          meshViews(tools, s)
            .filter((v) => v.node !== cut.name)
            .every((v) => v.reachable === 2),
        30000,
      ),
    ).toBe(true);
    const other = s.pods.find((p) => p.node !== cut.name)!;
    const inside = s.pods.find((p) => p.node === cut.name)!;
    expect(ping(other.name, inside.ip)).toBe(false);
    labCut(name, cut.name, false);
    await waitMesh(tools, s, 60000);
    expect(await eventually(() => pingMatrix(s).every((p) => p.ok), 20000)).toBe(true);
  }, 120_000);
});
