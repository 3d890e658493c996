/**
 * The real plugin binary and the real agent in a one-node lab: ADD, CHECK, DEL, rollback
 * in the kernel, concurrency, restarts, GC, STATUS, and a wall of malformed calls that
 * must each get the right code and leave nothing behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startLab, type TestLab } from "../support/lab.ts";
import { canRunHost, PLUGIN, PLUGIN_DIR } from "../support/env.ts";
import { hostVethName } from "../../net/agent/cni-exec.ts";
import { labAgent } from "../../net/lab/lab.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { tools } from "../support/lab.ts";
import { createNamedNetns, deleteNamedNetns, netnsPath } from "../../net/host/netns.ts";

const conf = (o: object = {}) => ({ cniVersion: "1.0.0", name: "weave", type: "weave-net", ...o });
let seq = 0;
const cid = () => `c${process.pid}x${seq++}`;

describe.skipIf(!canRunHost)("CNI plugin with a real agent", () => {
  let lab: TestLab;
  const env = (command: string, o: Record<string, string> = {}) => ({
    CNI_COMMAND: command,
    CNI_IFNAME: "eth0",
    CNI_PATH: PLUGIN_DIR,
    ...o,
  });

  beforeAll(async () => {
    lab = await startLab({ nodes: 1, pods: 0 });
  }, 60_000);
  afterAll(async () => {
    await lab?.down();
  }, 60_000);

  test("ADD, CHECK, DEL, DEL again", async () => {
    const ns = lab.podNs();
    const id = cid();
    const add = lab.cni(env("ADD", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf());
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(add.json.cniVersion).toBe("1.0.0");
    const ip = add.json.ips[0];
    expect(ip.address).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
    expect(ip.gateway).toBe("10.32.0.1");
    expect(add.json.interfaces[ip.interface]).toMatchObject({ name: "eth0", sandbox: ns });
    expect(add.json.interfaces[1].name).toBe(hostVethName(id, "eth0"));

    const podName = ns.split("/").pop()!;
    const addr = lab.exec(podName, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout;
    expect(addr).toContain(ip.address);
    expect(lab.exec(podName, ["ip", "route", "show", "default"]).stdout).toContain("via 10.32.0.1 dev eth0");
    expect(lab.exec(podName, ["ping", "-c", "1", "-W", "2", "10.32.0.1"]).code).toBe(0);
    expect(lab.held().some((l) => l.includes(id))).toBe(true);

    const check = lab.cni(env("CHECK", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf({ prevResult: add.json }));
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout).toBe("");

    for (let i = 0; i < 2; i++) {
      const del = lab.cni(env("DEL", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf());
      expect(del.code, del.stdout).toBe(0);
    }
    expect(lab.held().some((l) => l.includes(id))).toBe(false);
    expect(await lab.veths()).toEqual([]);
    expect(lab.exec(podName, ["ip", "link", "show", "eth0"]).code).not.toBe(0);

    const after = lab.cni(env("CHECK", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf({ prevResult: add.json }));
    expect(after.json.code).toBe(100);
  });

  test("every supported version gets a result in its own shape", async () => {
    for (const v of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
      const ns = lab.podNs();
      const id = cid();
      const add = lab.cni(env("ADD", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf({ cniVersion: v }));
      expect(add.code, add.stdout).toBe(0);
      expect(add.json.cniVersion).toBe(v);
      expect(add.json.ips[0].version === "4").toBe(v < "1.0.0");
      expect(lab.cni(env("DEL", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf({ cniVersion: v })).code).toBe(0);
    }
  });

  test("DEL without CNI_NETNS, and with the netns gone, still releases the address", async () => {
    for (const mode of ["no-netns", "gone"]) {
      const name = `${lab.node.replace(/-n1$/, "")}-g${mode === "gone" ? 1 : 2}`;
      createNamedNetns(name);
      const id = cid();
      const add = lab.cni(env("ADD", { CNI_CONTAINERID: id, CNI_NETNS: netnsPath(name) }), conf());
      expect(add.code, add.stdout).toBe(0);
      if (mode === "gone") deleteNamedNetns(name);
      const del = lab.cni(
        env("DEL", mode === "gone" ? { CNI_CONTAINERID: id, CNI_NETNS: netnsPath(name) } : { CNI_CONTAINERID: id }),
        conf(),
      );
      expect(del.code, del.stdout).toBe(0);
      expect(lab.held().some((l) => l.includes(id))).toBe(false);
      deleteNamedNetns(name);
    }
    expect(await lab.veths()).toEqual([]);
  });

  test("a second ADD for an ifname that exists fails with 4 and leaves the first attachment working", () => {
    const ns = lab.podNs();
    const id = cid();
    const add = lab.cni(env("ADD", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf());
    expect(add.code).toBe(0);
    for (const other of [id, cid()]) {
      const again = lab.cni(env("ADD", { CNI_CONTAINERID: other, CNI_NETNS: ns }), conf());
      expect(again.json.code).toBe(4);
      expect(again.json.msg).toContain('CNI_IFNAME "eth0" already exists');
    }
    expect(lab.cni(env("CHECK", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf({ prevResult: add.json })).code).toBe(0);
    expect(lab.held().filter((l) => l.includes(add.json.ips[0].address)).length).toBe(1);
    expect(lab.cni(env("DEL", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf()).code).toBe(0);
  });

  test("rollback in the kernel: a step that fails after allocation leaves no address and no veth", async () => {
    // 1. The host veth name is taken: creating the pair fails.
    const ns1 = lab.podNs();
    const id1 = cid();
    inNs(lab.node, ["ip", "link", "add", hostVethName(id1, "eth0"), "type", "veth", "peer", "name", "blocker0"]);
    const r1 = lab.cni(env("ADD", { CNI_CONTAINERID: id1, CNI_NETNS: ns1 }), conf());
    expect(r1.code).toBe(1);
    expect(r1.json.msg).toContain("File exists");
    inNs(lab.node, ["ip", "link", "del", hostVethName(id1, "eth0")]);

    // 2. The pod already has a default route: the last step fails, after the veth exists.
    const ns2 = lab.podNs();
    const pod2 = ns2.split("/").pop()!;
    const id2 = cid();
    for (const cmd of [
      ["ip", "link", "add", "xa", "type", "veth", "peer", "name", "xb"],
      ["ip", "link", "set", "xa", "up"],
      ["ip", "link", "set", "xb", "up"],
      ["ip", "addr", "add", "192.0.2.1/24", "dev", "xa"],
      ["ip", "route", "add", "default", "via", "192.0.2.2"],
    ]) {
      expect(lab.exec(pod2, cmd).code).toBe(0);
    }
    const r2 = lab.cni(env("ADD", { CNI_CONTAINERID: id2, CNI_NETNS: ns2 }), conf());
    expect(r2.code).toBe(1);
    expect(r2.json.msg).toContain("add route 0.0.0.0/0");

    expect(lab.held().some((l) => l.includes(id1) || l.includes(id2))).toBe(false);
    expect(await lab.veths()).toEqual([]);
    expect(lab.exec(pod2, ["ip", "link", "show", "eth0"]).code).not.toBe(0);
  });

  test("50 concurrent ADDs get 50 distinct addresses; 50 concurrent DELs release them all", async () => {
    const pods = Array.from({ length: 50 }, () => ({ ns: lab.podNs(), id: cid() }));
    const run = (command: string, p: { ns: string; id: string }) => {
      const proc = Bun.spawn(["nsenter", `--net=${netnsPath(lab.node)}`, PLUGIN], {
        env: { PATH: process.env.PATH!, ...env(command, { CNI_CONTAINERID: p.id, CNI_NETNS: p.ns }) },
        stdin: new Blob([JSON.stringify(conf({ socket: lab.socket }))]),
        stdout: "pipe",
        stderr: "pipe",
      });
      return proc.exited.then(async (code) => ({ code, out: await new Response(proc.stdout).text() }));
    };
    const adds = await Promise.all(pods.map((p) => run("ADD", p)));
    for (const a of adds) expect(a.code, a.out).toBe(0);
    const ips = adds.map((a) => JSON.parse(a.out).ips[0].address);
    expect(new Set(ips).size).toBe(50);
    expect((await lab.veths()).length).toBe(50);
    const dels = await Promise.all(pods.map((p) => run("DEL", p)));
    for (const d of dels) expect(d.code, d.out).toBe(0);
    expect(lab.held()).toEqual([]);
    expect(await lab.veths()).toEqual([]);
  }, 120_000);

  test("allocations survive an agent restart; ADD waits for nothing and says 11 while it is down", async () => {
    const ns = lab.podNs();
    const id = cid();
    const add = lab.cni(env("ADD", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf());
    expect(add.code).toBe(0);
    const node = lab.state.nodes[0]!;
    // through lab.json, so the lab's teardown stops the agent that runs at the end
    await labAgent(lab.state.name, "stop", node.name, tools);

    const down = lab.cni(env("ADD", { CNI_CONTAINERID: cid(), CNI_NETNS: lab.podNs() }), conf());
    expect(down.json.code).toBe(11);
    expect(down.json.msg).toContain("not reachable");
    const st = lab.cni(env("STATUS"), conf({ cniVersion: "1.1.0" }));
    expect(st.json.code).toBe(50);
    // The pod keeps its network while the agent is away.
    expect(lab.exec(ns.split("/").pop()!, ["ping", "-c", "1", "-W", "2", "10.32.0.1"]).code).toBe(0);

    await labAgent(lab.state.name, "start", node.name, tools);
    expect(lab.held().some((l) => l.includes(id) && l.includes(add.json.ips[0].address))).toBe(true);
    expect(lab.cni(env("CHECK", { CNI_CONTAINERID: id, CNI_NETNS: ns }), conf({ prevResult: add.json })).code).toBe(0);
    const nextId = cid();
    const next = lab.cni(env("ADD", { CNI_CONTAINERID: nextId, CNI_NETNS: lab.podNs() }), conf());
    expect(next.json.ips[0].address).not.toBe(add.json.ips[0].address);
    for (const x of [id, nextId]) expect(lab.cni(env("DEL", { CNI_CONTAINERID: x }), conf()).code).toBe(0);
  }, 60_000);

  test("a stop right after a DEL finishes it: the host veth is gone before the agent exits", async () => {
    const id = cid();
    const add = lab.cni(env("ADD", { CNI_CONTAINERID: id, CNI_NETNS: lab.podNs() }), conf());
    expect(add.code, add.stdout).toBe(0);
    const veth = hostVethName(id, "eth0");
    expect(lab.cni(env("DEL", { CNI_CONTAINERID: id }), conf()).code).toBe(0);
    // DEL retires the veth; deleting it is deferred (about a second) unless the agent stops first
    const node = lab.state.nodes[0]!;
    await labAgent(lab.state.name, "stop", node.name, tools);
    const links = inNs(lab.node, ["ip", "-o", "link", "show"]).stdout;
    expect(links).not.toContain(veth);
    const log = await Bun.file(`${node.dataDir}/agent.log`).text();
    expect(log).toContain("SIGTERM: stopping; finishing pending work first");
    expect(log.trimEnd().endsWith("stopped")).toBe(true);
    await labAgent(lab.state.name, "start", node.name, tools);
  }, 60_000);

  test("GC releases attachments the runtime no longer lists; STATUS is ok", async () => {
    for (const a of lab.held()) {
      const [, id, ifname] = a.split(/\s+/);
      lab.cni(env("DEL", { CNI_CONTAINERID: id!, CNI_IFNAME: ifname! }), conf());
    }
    const keep = { ns: lab.podNs(), id: cid() };
    const drop = { ns: lab.podNs(), id: cid() };
    for (const p of [keep, drop])
      expect(lab.cni(env("ADD", { CNI_CONTAINERID: p.id, CNI_NETNS: p.ns }), conf()).code).toBe(0);
    const gc = lab.cni(
      env("GC"),
      conf({ cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: keep.id, ifname: "eth0" }] }),
    );
    expect(gc.code, gc.stdout).toBe(0);
    const held = lab.held();
    expect(held.length).toBe(1);
    expect(held[0]).toContain(keep.id);
    expect(await lab.veths()).toEqual([hostVethName(keep.id, "eth0")]);
    expect(lab.cni(env("STATUS"), conf({ cniVersion: "1.1.0" })).code).toBe(0);
    expect(lab.cni(env("DEL", { CNI_CONTAINERID: keep.id, CNI_NETNS: keep.ns }), conf()).code).toBe(0);
  });
});
