/** `weave setup-cni`: what the DaemonSet's init container leaves on a node. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { canRunHost, WEAVE } from "../support/env.ts";

describe.skipIf(!canRunHost)("setup-cni", () => {
  const dir = `/tmp/weave-setup-${process.pid}`;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("installs the plugin and writes 10-weave.conflist, leaving other files alone", () => {
    mkdirSync(`${dir}/net.d`, { recursive: true });
    writeFileSync(`${dir}/net.d/99-loopback.conf`, '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}');
    const r = Bun.spawnSync([WEAVE, "setup-cni", "--bin-dir", `${dir}/bin`, "--conf-dir", `${dir}/net.d`]);
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    expect(readdirSync(`${dir}/net.d`).sort()).toEqual(["10-weave.conflist", "99-loopback.conf"]);
    expect(readFileSync(`${dir}/net.d/99-loopback.conf`, "utf8")).toContain("loopback");
    expect(readdirSync(`${dir}/bin`)).toEqual(["weave-net"]);
    expect(statSync(`${dir}/bin/weave-net`).mode & 0o111).toBe(0o111);

    const list = JSON.parse(readFileSync(`${dir}/net.d/10-weave.conflist`, "utf8"));
    expect(list).toEqual({
      cniVersion: "1.0.0",
      name: "weave",
      plugins: [
        { name: "weave", type: "weave-net", hairpinMode: true },
        { type: "portmap", capabilities: { portMappings: true }, snat: true },
      ],
    });

    // The installed file is the plugin: it answers VERSION under its own name.
    const v = Bun.spawnSync([`${dir}/bin/weave-net`], { env: { CNI_COMMAND: "VERSION" }, stdin: Buffer.from('{"cniVersion":"1.0.0"}') });
    expect(JSON.parse(v.stdout.toString()).supportedVersions).toContain("1.1.0");
  });

  test("running it again replaces its own files in place", () => {
    const r = Bun.spawnSync([WEAVE, "setup-cni", "--bin-dir", `${dir}/bin`, "--conf-dir", `${dir}/net.d`]);
    expect(r.exitCode).toBe(0);
    expect(readdirSync(`${dir}/net.d`).sort()).toEqual(["10-weave.conflist", "99-loopback.conf"]);
    expect(readdirSync(`${dir}/bin`)).toEqual(["weave-net"]);
  });
});
