/**
 * Malformed calls of the real plugin binary against a real agent. Each must fail with
 * the right CNI code and a message naming what was wrong; afterwards the agent holds no
 * address and the node has no veth.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { startLab, type TestLab } from "../support/lab.ts";
import { canRunHost, PLUGIN, PLUGIN_DIR, uniqueName } from "../support/env.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { createNamedNetns, deleteNamedNetns } from "../../net/host/netns.ts";

type Case = {
  what: string;
  env?: Record<string, string | undefined>;
  stdin?: string;
  conf?: Record<string, unknown>;
  code: number;
  names: string | RegExp;
  noAgent?: boolean;
};

describe.skipIf(!canRunHost)("bad input", () => {
  let lab: TestLab;
  let ns: string;
  const tmp = `/tmp/weave-bad-${process.pid}`;
  const lonely = uniqueName("l");

  beforeAll(async () => {
    lab = await startLab();
    ns = lab.podNs();
    mkdirSync(tmp, { recursive: true });
    writeFileSync(`${tmp}/plain`, "not a namespace");
    createNamedNetns(lonely); // a node with no agent
  }, 60_000);
  afterAll(async () => {
    rmSync(tmp, { recursive: true, force: true });
    deleteNamedNetns(lonely);
    await lab?.down();
  }, 60_000);

  const conf = { cniVersion: "1.0.0", name: "weave", type: "weave-net" };
  const cases: Case[] = [
    { what: "empty stdin", stdin: "", code: 6, names: "empty" },
    { what: "truncated JSON", stdin: '{"cniVersion":', code: 6, names: "not valid JSON" },
    { what: "a JSON list", stdin: "[]", code: 6, names: "JSON object" },
    { what: "JSON null", stdin: "null", code: 6, names: "JSON object" },
    { what: "binary garbage", stdin: "\u0000\u0001\u00ff", code: 6, names: "not valid JSON" },
    { what: "no cniVersion", conf: { cniVersion: undefined }, code: 1, names: "cniVersion" },
    { what: "too old cniVersion", conf: { cniVersion: "0.2.0" }, code: 1, names: '"0.2.0" is too old' },
    { what: "unknown cniVersion", conf: { cniVersion: "9.9.9" }, code: 1, names: '"9.9.9"' },
    { what: "numeric cniVersion", conf: { cniVersion: 1 }, code: 1, names: "cniVersion" },
    { what: "no name", conf: { name: undefined }, code: 7, names: "name" },
    { what: "bad name", conf: { name: "my net" }, code: 7, names: '"my net"' },
    { what: "no type", conf: { type: undefined }, code: 7, names: "type" },
    { what: "mtu not a number", conf: { mtu: "abc" }, code: 7, names: '"abc"' },
    { what: "mtu too small", conf: { mtu: 10 }, code: 7, names: "mtu is 10" },
    { what: "hairpinMode not a boolean", conf: { hairpinMode: "yes" }, code: 7, names: "hairpinMode" },
    { what: "bridge with a slash", conf: { bridge: "x/y" }, code: 7, names: '"x/y"' },
    {
      what: "an ipam section",
      conf: { ipam: { type: "host-local", subnet: "10.1.0.0/16" } },
      code: 2,
      names: "host-local",
    },
    { what: "prevResult not an object", conf: { prevResult: "x" }, code: 7, names: "prevResult" },
    { what: "prevResult ips not a list", conf: { prevResult: { ips: 5 } }, code: 7, names: "prevResult.ips" },
    { what: "no CNI_COMMAND", env: { CNI_COMMAND: undefined }, code: 4, names: "CNI_COMMAND" },
    { what: "unknown CNI_COMMAND", env: { CNI_COMMAND: "CREATE" }, code: 4, names: '"CREATE"' },
    { what: "no CNI_CONTAINERID", env: { CNI_CONTAINERID: undefined }, code: 4, names: "CNI_CONTAINERID" },
    {
      what: "CNI_CONTAINERID with bad characters",
      env: { CNI_CONTAINERID: "abc;rm -rf" },
      code: 4,
      names: '"abc;rm -rf"',
    },
    { what: "CNI_CONTAINERID starting with a dot", env: { CNI_CONTAINERID: ".abc" }, code: 4, names: '".abc"' },
    { what: "no CNI_NETNS", env: { CNI_NETNS: undefined }, code: 4, names: "CNI_NETNS" },
    { what: "relative CNI_NETNS", env: { CNI_NETNS: "netns/x" }, code: 4, names: '"netns/x"' },
    {
      what: "CNI_NETNS that does not exist",
      env: { CNI_NETNS: "/var/run/netns/weave-no-such-ns" },
      code: 4,
      names: /weave-no-such-ns.*does not exist/,
    },
    {
      what: "CNI_NETNS a plain file",
      env: { CNI_NETNS: `${tmp}/plain` },
      code: 4,
      names: /plain.*not a network namespace/,
    },
    { what: "CNI_NETNS a directory", env: { CNI_NETNS: tmp }, code: 4, names: /not a network namespace/ },
    { what: "no CNI_IFNAME", env: { CNI_IFNAME: undefined }, code: 4, names: "CNI_IFNAME" },
    {
      what: "CNI_IFNAME too long",
      env: { CNI_IFNAME: "eth0123456789012" },
      code: 4,
      names: /"eth0123456789012".*16 characters/,
    },
    { what: "CNI_IFNAME with a slash", env: { CNI_IFNAME: "eth/0" }, code: 4, names: '"eth/0"' },
    { what: "CNI_IFNAME with a space", env: { CNI_IFNAME: "eth 0" }, code: 4, names: '"eth 0"' },
    { what: "no CNI_PATH", env: { CNI_PATH: undefined }, code: 4, names: "CNI_PATH" },
    { what: "CNI_ARGS not K=V", env: { CNI_ARGS: "K8S_POD_NAME;x" }, code: 4, names: "CNI_ARGS" },
    {
      what: "CHECK at 0.3.1",
      env: { CNI_COMMAND: "CHECK" },
      conf: { cniVersion: "0.3.1" },
      code: 1,
      names: "CHECK needs cniVersion 0.4.0",
    },
    { what: "CHECK without prevResult", env: { CNI_COMMAND: "CHECK" }, code: 7, names: "prevResult" },
    { what: "GC at 1.0.0", env: { CNI_COMMAND: "GC" }, code: 1, names: "GC needs cniVersion 1.1.0" },
    {
      what: "GC with a bad attachment list",
      env: { CNI_COMMAND: "GC" },
      conf: { cniVersion: "1.1.0", "cni.dev/valid-attachments": "all" },
      code: 7,
      names: "cni.dev/valid-attachments",
    },
    { what: "ADD with the agent down", noAgent: true, code: 11, names: /not reachable.*try again later/ },
    { what: "DEL with the agent down", noAgent: true, env: { CNI_COMMAND: "DEL" }, code: 11, names: "not reachable" },
    {
      what: "STATUS with the agent down",
      noAgent: true,
      env: { CNI_COMMAND: "STATUS" },
      conf: { cniVersion: "1.1.0" },
      code: 50,
      names: "not reachable",
    },
  ];

  test("there are at least 30 of them", () => expect(cases.length).toBeGreaterThanOrEqual(30));

  for (const c of cases) {
    test(`${c.what}: code ${c.code}`, () => {
      const env: Record<string, string> = {};
      const full = {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: `bad${process.pid}`,
        CNI_NETNS: ns,
        CNI_IFNAME: "eth0",
        CNI_PATH: PLUGIN_DIR,
        ...c.env,
      };
      for (const [k, v] of Object.entries(full)) if (v !== undefined) env[k] = v;
      // a unix socket is reachable from any namespace: "no agent" means a socket nobody serves
      const socket = c.noAgent ? `${tmp}/no-agent.sock` : lab.socket;
      const body = { ...conf, socket, ...c.conf };
      for (const [k, v] of Object.entries(body)) if (v === undefined) delete (body as Record<string, unknown>)[k];
      const stdin = c.stdin ?? JSON.stringify(body);
      const r = inNs(c.noAgent ? lonely : lab.node, [PLUGIN], { env, stdin });
      expect(r.code).not.toBe(0);
      let out: { code: number; msg: string; cniVersion: string };
      try {
        out = JSON.parse(r.stdout);
      } catch {
        throw new Error(`stdout is not a CNI error object: ${JSON.stringify(r.stdout)} (stderr ${r.stderr})`);
      }
      expect(r.stdout.trim().split("\n").length).toBe(1);
      expect(out.code).toBe(c.code);
      expect(typeof out.cniVersion).toBe("string");
      if (typeof c.names === "string") expect(out.msg).toContain(c.names);
      else expect(out.msg).toMatch(c.names);
    });
  }

  test("afterwards: no address held, no veth left, and the pod netns is untouched", async () => {
    expect(lab.held()).toEqual([]);
    expect(await lab.veths()).toEqual([]);
    const links = inNs(ns.split("/").pop()!, ["ip", "-o", "link"]).stdout.trim().split("\n");
    expect(links.length).toBe(1);
  });
});
