import { describe, expect, test } from "bun:test";
import { parseAgentOptions, readPassword } from "../../commands/agent.ts";
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

describe("the mesh password", () => {
  const text = (p: { bytes: Uint8Array } | undefined) => (p ? new TextDecoder().decode(p.bytes) : undefined);
  const files: Record<string, string> = {
    "/pw": "s3cret\n",
    "/pw-crlf": "s3cret\r\n",
    "/two": "s3cret\n\n",
    "/rotating": "s3cret\r\nn3xt\n",
    "/three": "a\nb\nc\n",
    "/nl": "\n",
  };
  const readFile = (path: string) => {
    if (!(path in files)) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
    return new TextEncoder().encode(files[path]);
  };

  test("none by default; WEAVE_PASSWORD or --password-file (winning), less one trailing newline; a second line or WEAVE_PASSWORD_NEXT is the next", () => {
    expect(readPassword({}, {})).toBeUndefined();
    expect(readPassword({}, { WEAVE_PASSWORD: "s3cret" })).toMatchObject({ source: "WEAVE_PASSWORD" });
    expect(text(readPassword({}, { WEAVE_PASSWORD: "s3cret\n" }))).toBe("s3cret");
    expect(text(readPassword({}, { WEAVE_PASSWORD: " spaces kept " }))).toBe(" spaces kept ");
    const fromFile = readPassword({ passwordFile: "/pw" }, { WEAVE_PASSWORD: "other" }, readFile);
    expect(fromFile?.source).toBe('--password-file "/pw"');
    expect(text(fromFile)).toBe("s3cret");
    expect(text(readPassword({ passwordFile: "/pw-crlf" }, {}, readFile))).toBe("s3cret");
    const two = readPassword({ passwordFile: "/rotating" }, {}, readFile);
    expect([text(two), two?.next && new TextDecoder().decode(two.next)]).toEqual(["s3cret", "n3xt"]);
    const env = readPassword({}, { WEAVE_PASSWORD: "s3cret", WEAVE_PASSWORD_NEXT: "n3xt\n" });
    expect(new TextDecoder().decode(env?.next)).toBe("n3xt");
  });

  test.each([
    [{}, { WEAVE_PASSWORD: "" }, "E_BAD_PASSWORD", "WEAVE_PASSWORD is empty"],
    [{}, { WEAVE_PASSWORD: "\n" }, "E_BAD_PASSWORD", "WEAVE_PASSWORD is empty"],
    [{ passwordFile: "/nl" }, {}, "E_BAD_PASSWORD", '--password-file "/nl" is empty'],
    [{ passwordFile: "/two" }, {}, "E_BAD_PASSWORD", "its second line (the next password) is empty"],
    [{ passwordFile: "/three" }, {}, "E_BAD_PASSWORD", "more than two lines"],
    [{}, { WEAVE_PASSWORD_NEXT: "s3cret" }, "E_BAD_PASSWORD", "WEAVE_PASSWORD_NEXT is set without a current password"],
    [{}, { WEAVE_PASSWORD: "s3cret", WEAVE_PASSWORD_NEXT: "" }, "E_BAD_PASSWORD", "WEAVE_PASSWORD_NEXT is empty"],
    [{ passwordFile: "/missing" }, {}, "E_BAD_PASSWORD", '--password-file "/missing": cannot read it (ENOENT)'],
    [{ passwordFile: true as unknown as string }, {}, "E_BAD_FLAG", "--password-file needs the path"],
  ])("refuses %p %p with %s naming it", (o, env, code, named) => {
    try {
      readPassword(o, env, readFile);
      throw new Error("accepted");
    } catch (e) {
      expect((e as WeaveError).code).toBe(code as `E_${string}`);
      expect((e as Error).message).toContain(named);
      expect((e as Error).message).not.toContain("s3cret");
    }
  });
});

describe("agent refusals at start", () => {
  const { built, WEAVE, ROOT } = require("../support/env.ts") as typeof import("../support/env.ts");
  const agent = (args: string[], env: Record<string, string>) =>
    Bun.spawnSync(
      [process.execPath, `${ROOT}/cli.ts`, "agent", "--data-dir", `/tmp/weave-pw-${process.pid}`, ...args],
      {
        env: { ...process.env, ...env },
        stderr: "pipe",
      },
    );
  test("an empty WEAVE_PASSWORD is refused, not taken for no encryption", () => {
    const r = agent([], { WEAVE_PASSWORD: "" });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("E_BAD_PASSWORD");
    expect(r.stderr.toString()).toContain("WEAVE_PASSWORD is empty");
  });
  test("a password is never a flag's value", () => {
    const r = agent(["--password", "s3cret"], {});
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain("Unknown option `--password`");
  });
  test.skipIf(!built)("a bad flag value is a usage error naming it", () => {
    const r = Bun.spawnSync([WEAVE, "agent", "--peers", "not-an-ip"], { stderr: "pipe" });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain('--peers: "not-an-ip" is not an IPv4 address');
    const r2 = Bun.spawnSync([WEAVE, "agent", "--ipalloc-init", "paxos"], { stderr: "pipe" });
    expect(r2.stderr.toString()).toContain('IPALLOC_INIT "paxos"');
  });
});
