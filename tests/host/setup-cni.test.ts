/**
 * `weave setup-cni`: what the DaemonSet's init container leaves on a node, and its
 * refusal beside another network's config (the Node event is covered against the
 * API-server stand-in in tests/unit/install.test.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { canRunHost, WEAVE } from "../support/env.ts";

describe.skipIf(!canRunHost)("setup-cni", () => {
  const dir = `/tmp/weave-setup-${process.pid}`;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // A loopback-only config is no network (runtimes add it beside any network): no refusal.
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
    const v = Bun.spawnSync([`${dir}/bin/weave-net`], {
      env: { CNI_COMMAND: "VERSION" },
      stdin: Buffer.from('{"cniVersion":"1.0.0"}'),
    });
    expect(JSON.parse(v.stdout.toString()).supportedVersions).toContain("1.1.0");
  });

  test("running it again replaces its own files in place", () => {
    const r = Bun.spawnSync([WEAVE, "setup-cni", "--bin-dir", `${dir}/bin`, "--conf-dir", `${dir}/net.d`]);
    expect(r.exitCode).toBe(0);
    expect(readdirSync(`${dir}/net.d`).sort()).toEqual(["10-weave.conflist", "99-loopback.conf"]);
    expect(readdirSync(`${dir}/bin`)).toEqual(["weave-net"]);
  });

  test("refuses beside another network's conflist, names it, installs nothing; --force installs", () => {
    const d = `${dir}/other`;
    mkdirSync(`${d}/net.d`, { recursive: true });
    const calico = JSON.stringify({
      cniVersion: "0.3.1",
      name: "k8s-pod-network",
      plugins: [{ type: "calico" }, { type: "bandwidth", capabilities: { bandwidth: true } }],
    });
    writeFileSync(`${d}/net.d/10-calico.conflist`, calico);
    const args = [WEAVE, "setup-cni", "--bin-dir", `${d}/bin`, "--conf-dir", `${d}/net.d`];
    // no cluster here: HOSTNAME alone does not make it try to record an event
    const r = Bun.spawnSync(args, { env: { PATH: process.env.PATH ?? "", HOSTNAME: "n1" } });
    expect(r.exitCode).toBe(1);
    const err = r.stderr.toString();
    expect(err).toContain(`${d}/net.d/10-calico.conflist (plugin types: calico, bandwidth)`);
    expect(err).toContain("classic outage");
    expect(err).toContain("[E_CNI_CONFLICT]");
    expect(readdirSync(`${d}/net.d`)).toEqual(["10-calico.conflist"]);
    expect(existsSync(`${d}/bin`)).toBe(false);

    const f = Bun.spawnSync([...args, "--force"], { env: { PATH: process.env.PATH ?? "" } });
    expect(f.exitCode, f.stderr.toString()).toBe(0);
    expect(f.stderr.toString()).toContain("--force: installing beside");
    expect(readdirSync(`${d}/net.d`).sort()).toEqual(["10-calico.conflist", "10-weave.conflist"]);
    expect(readFileSync(`${d}/net.d/10-calico.conflist`, "utf8")).toBe(calico);
    expect(readdirSync(`${d}/bin`)).toEqual(["weave-net"]);
  });
});
