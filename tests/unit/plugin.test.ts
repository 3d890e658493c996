/** The plugin's runtime side: what it prints and exits with, for a given env, stdin and agent. */
import { describe, expect, test } from "bun:test";
import { runPlugin, type AgentCni } from "../../net/cni/plugin.ts";
import { CniCode, CniError } from "../../net/cni/errors.ts";
import type { CniReply, CniRequest } from "../../net/cni/wire.ts";

const env = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "c1",
  CNI_NETNS: "/var/run/netns/p",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
};
const conf = (o: object = {}) => JSON.stringify({ cniVersion: "1.0.0", name: "weave", type: "weave-net", ...o });
const result = {
  interfaces: [{ name: "weave" }, { name: "vethwepl1" }, { name: "eth0", sandbox: "/var/run/netns/p" }],
  ips: [{ address: "10.32.0.2/12", gateway: "10.32.0.1", interface: 2 }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.32.0.1" }],
};

function agent(reply: CniReply | Error): AgentCni & { seen: CniRequest[] } {
  const seen: CniRequest[] = [];
  return {
    seen,
    async cni(req) {
      seen.push(req);
      if (reply instanceof Error) throw reply;
      return reply;
    },
  };
}

async function run(e: Record<string, string | undefined>, stdin: string, a: AgentCni = agent({ ok: true, result })) {
  const out = await runPlugin(e, stdin, { agent: a, log: () => {}, pid: 42 });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

describe("plugin", () => {
  test("VERSION answers without stdin or agent", async () => {
    const r = await run({ CNI_COMMAND: "VERSION" }, "", agent(new Error("must not be called")));
    expect(r.exitCode).toBe(0);
    expect(r.json.supportedVersions).toEqual(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  });

  test("ADD forwards the call (with its pid) and prints the result in the config's version", async () => {
    const a = agent({ ok: true, result });
    const r = await run({ ...env, CNI_ARGS: "K8S_POD_NAME=web" }, conf({ cniVersion: "0.4.0" }), a);
    expect(r.exitCode).toBe(0);
    expect(r.json.cniVersion).toBe("0.4.0");
    expect(r.json.ips[0].version).toBe("4");
    expect(a.seen[0]).toMatchObject({
      command: "ADD",
      containerId: "c1",
      netns: "/var/run/netns/p",
      ifname: "eth0",
      pid: 42,
      args: { K8S_POD_NAME: "web" },
    });
    expect(a.seen[0]!.conf.cniVersion).toBe("0.4.0");
  });

  test("ADD chained after another plugin outputs the previous result with ours", async () => {
    const prevResult = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "lo", sandbox: "/var/run/netns/p" }],
      ips: [],
      routes: [],
    };
    const r = await run(env, conf({ prevResult }));
    expect(r.json.interfaces.map((i: { name: string }) => i.name)).toEqual(["lo", "weave", "vethwepl1", "eth0"]);
    expect(r.json.ips[0].interface).toBe(3);
  });

  test("DEL, CHECK, GC, STATUS print nothing on success", async () => {
    for (const [cmd, v] of [
      ["DEL", "1.0.0"],
      ["CHECK", "1.0.0"],
      ["GC", "1.1.0"],
      ["STATUS", "1.1.0"],
    ] as const) {
      const r = await run(
        { ...env, CNI_COMMAND: cmd },
        conf({ cniVersion: v, prevResult: result }),
        agent({ ok: true }),
      );
      expect(r).toMatchObject({ exitCode: 0, stdout: "" });
    }
  });

  test("an agent error comes out as the spec's error object in the config's version", async () => {
    const r = await run(
      env,
      conf({ cniVersion: "0.3.1" }),
      agent({ ok: false, code: 4, msg: 'CNI_IFNAME "eth0" already exists' }),
    );
    expect(r.exitCode).toBe(1);
    expect(r.json).toEqual({ cniVersion: "0.3.1", code: 4, msg: 'CNI_IFNAME "eth0" already exists' });
  });

  test("an unreachable agent: 11 for ADD and DEL, 50 for STATUS", async () => {
    const down = () =>
      agent(new CniError(CniCode.TryAgainLater, "weave agent at http://127.0.0.1:6784 is not reachable"));
    expect((await run(env, conf(), down())).json.code).toBe(11);
    expect((await run({ ...env, CNI_COMMAND: "DEL" }, conf(), down())).json.code).toBe(11);
    const st = await run({ ...env, CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0" }), down());
    expect(st.json.code).toBe(50);
    expect(st.json.msg).toContain("not reachable");
  });

  test("a truly unexpected exception is 999, once", async () => {
    const r = await run(env, conf(), agent(new TypeError("boom")));
    expect(r.json).toMatchObject({ code: 999, msg: "unexpected error: boom" });
  });

  test("bad input never reaches the agent", async () => {
    const a = agent(new Error("must not be called"));
    for (const [e, stdin, code] of [
      [{ ...env, CNI_IFNAME: "x".repeat(16) }, conf(), 4],
      [env, "not json", 6],
      [env, conf({ cniVersion: "0.2.0" }), 1],
      [env, conf({ ipam: { type: "host-local" } }), 2],
      [env, conf({ mtu: -1 }), 7],
    ] as const) {
      const r = await run(e, stdin, a);
      expect(r.exitCode).toBe(1);
      expect(r.json.code).toBe(code);
    }
    expect(a.seen).toEqual([]);
  });
});
