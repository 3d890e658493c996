/** `weave lab` as a user runs it: up, status, down, through the CLI. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { canRunHost, WEAVE, uniqueName } from "../support/env.ts";
import { listNamedNetns } from "../../net/host/netns.ts";
import { labDown } from "../../net/lab/lab.ts";
import { readLab } from "../../net/lab/state.ts";
import { pidAlive } from "../../net/host/process.ts";
import { tools } from "../support/lab.ts";

describe.skipIf(!canRunHost)("weave lab", () => {
  const name = uniqueName("e");
  const weave = (...args: string[]) => {
    const r = Bun.spawnSync([WEAVE, ...args], { env: { ...process.env, NO_COLOR: "1" } });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  afterAll(async () => {
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("up (defaults: 3 nodes, 2 pods each): the peer table and a complete ping matrix; lab.json describes it", () => {
    const r = weave("lab", "up", "--name", name);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toContain("all 30 pings went through");
    expect(r.out).toMatch(/MESH VIEW OF\s+PEERS REACHABLE\s+CONNECTIONS/);
    const s = JSON.parse(readFileSync(`/run/weave-lab/${name}/lab.json`, "utf8"));
    expect(s.name).toBe(name);
    expect(s.nodes).toEqual(
      [1, 2, 3].map((i) => ({
        name: `${name}-n${i}`,
        netns: `${name}-n${i}`,
        ip: `198.18.0.${10 + i}`,
        agentPid: expect.any(Number),
        npcPid: expect.any(Number),
        dataDir: `/run/weave-lab/${name}/n${i}`,
        cniConfDir: `/run/weave-lab/${name}/n${i}/net.d`,
      })),
    );
    expect(s.pods.map((p: { name: string }) => p.name)).toEqual(
      [1, 2, 3].flatMap((i) => [`${name}-n${i}-p1`, `${name}-n${i}-p2`]),
    );
    for (const p of s.pods) {
      expect(p).toMatchObject({
        netns: `/var/run/netns/${p.name}`,
        containerId: expect.stringMatching(/^[0-9a-f]{32}$/),
      });
      expect(p.ip).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+$/);
    }
    expect(new Set(s.pods.map((p: { ip: string }) => p.ip)).size).toBe(6);
    for (const n of s.nodes) expect(pidAlive(n.agentPid)).toBe(true);
  }, 60_000);

  test("up again refuses, naming the lab", () => {
    const r = weave("lab", "up", "--name", name);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`lab "${name}" is already up`);
  });

  test("status prints the summary; --json the state", () => {
    const r = weave("lab", "status", "--name", name);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`${name}-n3-p2`);
    expect(r.out).toContain("ready");
    const j = JSON.parse(weave("lab", "status", "--name", name, "--json").out);
    expect(j.pods.length).toBe(6);
  });

  test("agent stop|start NODE and cut|heal NODE, through the CLI", () => {
    const before = JSON.parse(readFileSync(`/run/weave-lab/${name}/lab.json`, "utf8")).nodes[2].agentPid;
    expect(weave("lab", "agent", "stop", "n3", "--name", name).out).toContain(`agent of ${name}-n3 stopped`);
    expect(pidAlive(before)).toBe(false);
    expect(weave("lab", "status", "--name", name).out).toMatch(
      new RegExp(`${name}-n3\\s+198\\.18\\.0\\.13\\s+stopped`),
    );
    const started = weave("lab", "agent", "start", `${name}-n3`, "--name", name);
    expect(started.code, started.err).toBe(0);
    const after = JSON.parse(readFileSync(`/run/weave-lab/${name}/lab.json`, "utf8")).nodes[2].agentPid;
    expect(after).not.toBe(before);
    expect(pidAlive(after)).toBe(true);
    expect(weave("lab", "agent", "start", "n3", "--name", name).err).toContain("already running");
    expect(weave("lab", "cut", "n2", "--name", name).out).toContain("cut off");
    expect(weave("lab", "heal", "n2", "--name", name).out).toContain("healed");
    expect(weave("lab", "cut", "n9", "--name", name).err).toContain('has no node "n9"');
  }, 60_000);

  test("bad flags are refused with the flag named", () => {
    expect(weave("lab", "up", "--name", "Bad_Name").err).toContain('--name "Bad_Name"');
    expect(weave("lab", "up", "--name", "zz", "--nodes", "0").err).toContain('--nodes "0"');
    expect(weave("lab", "dance").err).toContain('unknown lab action "dance"');
  });

  test("down removes every namespace, process and file it made", async () => {
    const s = readLab(name)!;
    const r = weave("lab", "down", "--name", name);
    expect(r.code, r.err).toBe(0);
    const left = listNamedNetns().filter(
      (n) => n === s.underlay || s.nodes.some((x) => x.netns === n) || s.pods.some((p) => p.name === n),
    );
    expect(left).toEqual([]);
    for (const n of s.nodes) expect(pidAlive(n.agentPid)).toBe(false);
    expect(existsSync(`/run/weave-lab/${name}`)).toBe(false);
    expect(weave("lab", "down", "--name", name).err).toContain(`no lab named "${name}"`);
  });
});
