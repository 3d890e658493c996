import { describe, expect, test } from "bun:test";
import { parseAgentOptions } from "../../commands/agent.ts";
import { WeaveError } from "../../net/errors.ts";

const base = { dataDir: "/var/lib/weave", bridge: "weave", httpAddr: "127.0.0.1:6784" };

describe("agent settings", () => {
  test("defaults", () => {
    const s = parseAgentOptions(base, { HOSTNAME: "node-a" });
    expect(s.range).toEqual({ base: (10 << 24) + (32 << 16), prefix: 12 });
    expect(s.mtu).toBeUndefined();
    expect(s.nickname).toBe("node-a");
    expect(s.http).toEqual({ hostname: "127.0.0.1", port: 6784 });
  });

  test("env and flags, flags winning", () => {
    expect(parseAgentOptions(base, { IPALLOC_RANGE: "10.40.0.0/16", WEAVE_MTU: "1400" })).toMatchObject({
      mtu: 1400,
      range: { prefix: 16 },
    });
    expect(
      parseAgentOptions(
        { ...base, ipallocRange: "10.50.0.0/16", mtu: 9000 },
        { IPALLOC_RANGE: "10.40.0.0/16", WEAVE_MTU: "1400" },
      ),
    ).toMatchObject({ mtu: 9000, range: { prefix: 16 } });
  });

  test("mesh and IPAM settings under Weave's names", () => {
    const s = parseAgentOptions(base, {
      KUBE_PEERS: "198.18.0.12 198.18.0.13:7000",
      CONN_LIMIT: "30",
      NO_MASQ_LOCAL: "0",
      IPALLOC_INIT: "consensus=3",
    });
    expect(s.peers).toEqual(["198.18.0.12", "198.18.0.13:7000"]);
    expect(s.connLimit).toBe(30);
    expect(s.noMasqLocal).toBe(false);
    expect(s.ipallocInit).toEqual({ kind: "consensus", peers: ["198.18.0.12:6783", "198.18.0.13:7000"] });
    expect(s.kube).toBe(false);
    expect(parseAgentOptions(base, { KUBERNETES_SERVICE_HOST: "10.96.0.1" }).kube).toBe(true);
    expect(parseAgentOptions({ ...base, ipallocInit: "seed=0a:1b:2c:3d:4e:5f" }, {}).ipallocInit).toEqual({
      kind: "seed",
      names: ["0a:1b:2c:3d:4e:5f"],
    });
    expect(parseAgentOptions({ ...base, ipallocInit: "observer" }, {}).ipallocInit).toEqual({ kind: "observer" });
    expect(parseAgentOptions(base, {}).noMasqLocal).toBe(true);
    expect(parseAgentOptions({ ...base, peers: "198.18.0.12" }, { KUBE_PEERS: "198.18.0.99" }).peers).toEqual([
      "198.18.0.12",
    ]);
  });

  test.each([
    [{}, { KUBE_PEERS: "node-a" }, "E_BAD_PEER", '"node-a"'],
    [{ peers: "198.18.0.12:99999" }, {}, "E_BAD_PEER", "198.18.0.12:99999"],
    [{}, { CONN_LIMIT: "-1" }, "E_BAD_FLAG", "CONN_LIMIT"],
    [{ ipallocInit: "consensus=5", peers: "198.18.0.12" }, {}, "E_BAD_FLAG", "says 5 peers"],
    [{ ipallocInit: "seed=nodeA" }, {}, "E_BAD_FLAG", '"nodeA" is not a peer name'],
    [{ advertiseAddress: "eth0" }, {}, "E_BAD_FLAG", "--advertise-address"],
    [{ ipallocRange: "10.32.0.0" }, {}, "E_BAD_RANGE", "10.32.0.0"],
    [{}, { IPALLOC_RANGE: "banana" }, "E_BAD_RANGE", "banana"],
    [{ ipallocRange: "10.32.0.1/12" }, {}, "E_BAD_RANGE", "host bits"],
    [{ ipallocRange: "10.32.0.0/31" }, {}, "E_BAD_RANGE", "too small"],
    [{}, { WEAVE_MTU: "big" }, "E_BAD_MTU", "big"],
    [{ mtu: 100 }, {}, "E_BAD_MTU", "100"],
    [{ httpAddr: "localhost" }, {}, "E_BAD_FLAG", "--http-addr"],
  ])("refuses %p %p with %s naming it", (over, env, code, named) => {
    try {
      parseAgentOptions({ ...base, ...over }, env);
      throw new Error("accepted");
    } catch (e) {
      expect(e).toBeInstanceOf(WeaveError);
      expect((e as WeaveError).code).toBe(code as `E_${string}`);
      expect((e as Error).message).toContain(named);
    }
  });
});

describe("agent refusals at start", () => {
  const { built, WEAVE } = require("../support/env.ts") as typeof import("../support/env.ts");
  test.skipIf(!built)("WEAVE_PASSWORD: refuses to start rather than pretend to encrypt", () => {
    const r = Bun.spawnSync([WEAVE, "agent", "--data-dir", `/tmp/weave-pw-${process.pid}`], {
      env: { ...process.env, WEAVE_PASSWORD: "secret" },
      stderr: "pipe",
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("E_NO_ENCRYPTION");
    expect(r.stderr.toString()).toContain("cannot encrypt yet");
  });
  test.skipIf(!built)("a bad flag value is a usage error naming it", () => {
    const r = Bun.spawnSync([WEAVE, "agent", "--peers", "not-an-ip"], { stderr: "pipe" });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain('--peers: "not-an-ip" is not an IPv4 address');
    const r2 = Bun.spawnSync([WEAVE, "agent", "--ipalloc-init", "paxos"], { stderr: "pipe" });
    expect(r2.stderr.toString()).toContain('IPALLOC_INIT "paxos"');
  });
});
