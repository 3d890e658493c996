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
    expect(parseAgentOptions(base, { IPALLOC_RANGE: "10.40.0.0/16", WEAVE_MTU: "1400" })).toMatchObject({ mtu: 1400, range: { prefix: 16 } });
    expect(parseAgentOptions({ ...base, ipallocRange: "10.50.0.0/16", mtu: 9000 }, { IPALLOC_RANGE: "10.40.0.0/16", WEAVE_MTU: "1400" })).toMatchObject({ mtu: 9000, range: { prefix: 16 } });
  });

  test.each([
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
