/** `weave lab` as a user runs it: up, status, down, through the CLI. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { canRunHost, WEAVE, uniqueName } from "../support/env.ts";
import { listNamedNetns } from "../../net/host/netns.ts";
import { labDown, readLab, pidAlive } from "../../net/host/lab.ts";
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

  test("up: pods get addresses and ping each other; lab.json describes it", () => {
    const r = weave("lab", "up", "--name", name, "--nodes", "1", "--pods", "3");
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toContain("all 6 pings went through");
    const s = JSON.parse(readFileSync(`/run/weave-lab/${name}/lab.json`, "utf8"));
    expect(s.name).toBe(name);
    expect(s.nodes).toEqual([{ name: `${name}-n1`, netns: `${name}-n1`, ip: "198.18.0.11", agentPid: expect.any(Number), dataDir: `/run/weave-lab/${name}/n1` }]);
    expect(s.pods.map((p: { name: string }) => p.name)).toEqual([`${name}-n1-p1`, `${name}-n1-p2`, `${name}-n1-p3`]);
    for (const p of s.pods) {
      expect(p).toMatchObject({ node: `${name}-n1`, netns: `/var/run/netns/${p.name}`, containerId: expect.stringMatching(/^[0-9a-f]{32}$/) });
      expect(p.ip).toMatch(/^10\.32\.0\.\d+$/);
    }
    expect(pidAlive(s.nodes[0].agentPid)).toBe(true);
  }, 60_000);

  test("up again refuses, naming the lab", () => {
    const r = weave("lab", "up", "--name", name);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`lab "${name}" is already up`);
  });

  test("status prints the summary; --json the state", () => {
    const r = weave("lab", "status", "--name", name);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`${name}-n1-p2`);
    expect(r.out).toContain("ready");
    const j = JSON.parse(weave("lab", "status", "--name", name, "--json").out);
    expect(j.pods.length).toBe(3);
  });

  test("bad flags are refused with the flag named", () => {
    expect(weave("lab", "up", "--name", "Bad_Name").err).toContain('--name "Bad_Name"');
    expect(weave("lab", "up", "--name", "zz", "--nodes", "0").err).toContain('--nodes "0"');
    expect(weave("lab", "dance").err).toContain('unknown lab action "dance"');
  });

  test("down removes every namespace, process and file it made", async () => {
    const s = readLab(name)!;
    const r = weave("lab", "down", "--name", name);
    expect(r.code, r.err).toBe(0);
    const left = listNamedNetns().filter((n) => n === s.underlay || s.nodes.some((x) => x.netns === n) || s.pods.some((p) => p.name === n));
    expect(left).toEqual([]);
    expect(pidAlive(s.nodes[0]!.agentPid)).toBe(false);
    expect(existsSync(`/run/weave-lab/${name}`)).toBe(false);
    expect(weave("lab", "down", "--name", name).err).toContain(`no lab named "${name}"`);
  });
});
