import { describe, expect, test } from "bun:test";
import { invalidIfname, parseArgs, parseEnv, parseNetConf } from "../../net/cni/config.ts";
import { CniCode, CniError } from "../../net/cni/errors.ts";
import { compareVersions, requireSupported, SUPPORTED_VERSIONS } from "../../net/cni/version.ts";

const base = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "abc",
  CNI_NETNS: "/var/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
};
const conf = (o: object = {}) => JSON.stringify({ cniVersion: "1.0.0", name: "weave", type: "weave-net", ...o });

function codeOf(fn: () => unknown): { code: number; msg: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return { code: e.code, msg: e.message };
    throw e;
  }
  throw new Error("did not throw");
}

describe("CNI environment", () => {
  test("parses a complete ADD", () => {
    const e = parseEnv({ ...base, CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web" });
    expect(e.command).toBe("ADD");
    expect(e.args).toEqual({ IgnoreUnknown: "1", K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web" });
    expect(e.path).toEqual(["/opt/cni/bin"]);
  });

  test("names every missing variable", () => {
    const r = codeOf(() => parseEnv({ CNI_COMMAND: "ADD" }));
    expect(r.code).toBe(CniCode.InvalidEnvironment);
    for (const v of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]) expect(r.msg).toContain(v);
  });

  test("DEL does not need CNI_NETNS; VERSION needs nothing", () => {
    const { CNI_NETNS: _, ...noNetns } = base;
    expect(parseEnv({ ...noNetns, CNI_COMMAND: "DEL" }).netns).toBe("");
    expect(parseEnv({ CNI_COMMAND: "VERSION" }).command).toBe("VERSION");
    // libcni fills the other variables with "dummy" when it asks for the version
    expect(
      parseEnv({
        CNI_COMMAND: "VERSION",
        CNI_NETNS: "dummy",
        CNI_IFNAME: "dummy",
        CNI_PATH: "dummy",
        CNI_CONTAINERID: "",
      }).command,
    ).toBe("VERSION");
  });

  test.each([
    [{ CNI_COMMAND: "" }, "CNI_COMMAND"],
    [{ CNI_COMMAND: "CREATE" }, 'CNI_COMMAND "CREATE"'],
    [{ CNI_CONTAINERID: "-abc" }, 'CNI_CONTAINERID "-abc"'],
    [{ CNI_CONTAINERID: "a b" }, 'CNI_CONTAINERID "a b"'],
    [{ CNI_CONTAINERID: "a/b" }, "CNI_CONTAINERID"],
    [{ CNI_IFNAME: "averyveryverylongname" }, 'CNI_IFNAME "averyveryverylongname"'],
    [{ CNI_IFNAME: "eth/0" }, 'CNI_IFNAME "eth/0"'],
    [{ CNI_IFNAME: "eth 0" }, "CNI_IFNAME"],
    [{ CNI_IFNAME: ".." }, 'CNI_IFNAME ".."'],
    [{ CNI_NETNS: "relative/path" }, 'CNI_NETNS "relative/path"'],
    [{ CNI_ARGS: "K8S_POD_NAME" }, "CNI_ARGS"],
  ])("bad %p gets code 4 naming it", (over, named) => {
    const r = codeOf(() => parseEnv({ ...base, ...over }));
    expect(r.code).toBe(CniCode.InvalidEnvironment);
    expect(r.msg).toContain(named);
  });

  test("interface names", () => {
    expect(invalidIfname("eth0")).toBeUndefined();
    expect(invalidIfname("a".repeat(15))).toBeUndefined();
    expect(invalidIfname("a".repeat(16))).toContain("16");
    expect(invalidIfname("")).toBe("is empty");
    expect(invalidIfname("a:b")).toBeDefined();
  });

  test("CNI_ARGS", () => {
    expect(parseArgs("")).toEqual({});
    expect(parseArgs("A=1;B=x=y;")).toEqual({ A: "1", B: "x=y" });
  });
});

describe("CNI versions", () => {
  test("supported versions are known and ordered", () => {
    expect([...SUPPORTED_VERSIONS]).toEqual(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    expect(compareVersions("0.4.0", "1.0.0")).toBeLessThan(0);
    expect(compareVersions("1.1.0", "1.0.0")).toBeGreaterThan(0);
  });

  test.each([
    ["0.2.0", "too old"],
    ["0.1.0", "too old"],
    ["2.0.0", "not supported"],
    ["1.0", "not supported"],
    ["latest", "not supported"],
  ])("%p is refused with code 1 (%s)", (v, why) => {
    const r = codeOf(() => requireSupported(v));
    expect(r.code).toBe(CniCode.IncompatibleVersion);
    expect(r.msg).toContain(`"${v}"`);
    expect(r.msg).toContain(why);
  });
});

describe("network configuration", () => {
  test("defaults", () => {
    const c = parseNetConf(conf(), "ADD");
    expect(c).toMatchObject({
      cniVersion: "1.0.0",
      name: "weave",
      type: "weave-net",
      bridge: "weave",
      hairpinMode: true,
      socket: "/run/weave/weave.sock",
    });
    expect(c.mtu).toBeUndefined();
  });

  test("empty or broken JSON is a decode failure (6)", () => {
    expect(codeOf(() => parseNetConf("", "ADD")).code).toBe(CniCode.DecodeFailure);
    expect(codeOf(() => parseNetConf("{", "ADD")).code).toBe(CniCode.DecodeFailure);
    expect(codeOf(() => parseNetConf("[1]", "ADD")).code).toBe(CniCode.DecodeFailure);
  });

  test.each([
    [{ name: "" }, "name"],
    [{ name: "-x" }, "name"],
    [{ name: 5 }, "name"],
    [{ type: 1 }, "type"],
    [{ hairpinMode: "yes" }, "hairpinMode"],
    [{ mtu: 100 }, "mtu"],
    [{ mtu: "1400" }, "mtu"],
    [{ bridge: "a/b" }, "bridge"],
    [{ socket: "weave.sock" }, 'socket is "weave.sock"'],
    [{ socket: `/${"x".repeat(120)}` }, "socket"],
    [{ socket: 1 }, "socket is 1"],
    [{ dns: "8.8.8.8" }, "dns"],
    [{ prevResult: { ips: "x" } }, "prevResult.ips"],
    [
      { prevResult: { interfaces: [{ name: "eth0" }], ips: [{ address: "10.32.0.2/12", interface: 3 }] } },
      "prevResult.ips[0].interface",
    ],
  ])("invalid %p gets code 7 naming %s", (over, field) => {
    const r = codeOf(() => parseNetConf(conf(over), "ADD"));
    expect(r.code).toBe(CniCode.InvalidConfig);
    expect(r.msg).toContain(field);
  });

  test("an ipam section is an unsupported field (2) naming its value", () => {
    const r = codeOf(() => parseNetConf(conf({ ipam: { type: "host-local" } }), "ADD"));
    expect(r.code).toBe(CniCode.UnsupportedField);
    expect(r.msg).toContain("host-local");
    expect(parseNetConf(conf({ ipam: {} }), "ADD").name).toBe("weave");
  });

  test("commands newer than the config's version are refused with code 1", () => {
    expect(codeOf(() => parseNetConf(conf({ cniVersion: "0.3.1" }), "CHECK")).code).toBe(CniCode.IncompatibleVersion);
    expect(codeOf(() => parseNetConf(conf({ cniVersion: "1.0.0" }), "GC")).code).toBe(CniCode.IncompatibleVersion);
    expect(codeOf(() => parseNetConf(conf({ cniVersion: "1.0.0" }), "STATUS")).code).toBe(CniCode.IncompatibleVersion);
  });

  test("CHECK needs a prevResult", () => {
    expect(codeOf(() => parseNetConf(conf({ cniVersion: "0.4.0" }), "CHECK")).msg).toContain("prevResult");
  });

  test("GC reads valid attachments under either key", () => {
    const a = [{ containerID: "c1", ifname: "eth0" }];
    expect(parseNetConf(conf({ cniVersion: "1.1.0", "cni.dev/valid-attachments": a }), "GC").validAttachments).toEqual(
      a,
    );
    expect(parseNetConf(conf({ cniVersion: "1.1.0", "cni.dev/attachments": a }), "GC").validAttachments).toEqual(a);
    expect(
      codeOf(() => parseNetConf(conf({ cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ id: 1 }] }), "GC")).code,
    ).toBe(CniCode.InvalidConfig);
  });

  test("runtimeConfig, args and unknown keys are accepted", () => {
    expect(
      parseNetConf(conf({ runtimeConfig: { portMappings: [] }, args: { cni: {} }, somethingElse: 1 }), "ADD").name,
    ).toBe("weave");
  });
});
