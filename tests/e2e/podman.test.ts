/**
 * End to end through a real container engine: podman 4 with its CNI backend runs busybox
 * containers on the network "weavetest" (weave-net + portmap) inside a lab node.
 *
 * Everything podman keeps lives in a temp dir: containers.conf (CONTAINERS_CONF),
 * storage.conf (CONTAINERS_STORAGE_CONF, vfs driver), the network config dir, tmp_dir.
 * Two things podman writes outside it and this file cleans up when it created them:
 * libcni's result cache /var/lib/cni/results (podman's CNI backend has no setting for it)
 * and containers/image's blob-info cache /var/lib/containers/cache (written by import).
 *
 * podman runs as `nsenter --net=/var/run/netns/<node> podman ...` (machine.md: not
 * `ip netns exec`, which remounts /sys).
 */
import { describe, test, expect, beforeAll, afterAll } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canRunHost, PLUGIN_DIR, REF_PLUGINS, uniqueName } from "../support/env.ts";
import { startLab, type TestLab } from "../support/lab.ts";

const NET = "weavetest";
const IMAGE = "localhost/busybox";
const POD_IP_RE = /inet (10\.(?:3[2-9]|4[0-7])\.\d+\.\d+)\/12 /; // an address in 10.32.0.0/12
const BUSYBOX = "/bin/busybox"; // busybox-static
const APPLETS = ["sh", "ip", "ping", "wget", "sleep", "cat", "echo", "printf", "ls", "nc", "httpd", "hostname", "sed"];

/** Machine paths podman writes outside its configured dirs; removed afterwards when this run created them. */
const CNI_CACHE = "/var/lib/cni";
const CNI_RESULTS = join(CNI_CACHE, "results");
const IMAGE_CACHE_ROOT = "/var/lib/containers";
const IMAGE_CACHE_DIR = join(IMAGE_CACHE_ROOT, "cache");
const IMAGE_CACHE_FILE = join(IMAGE_CACHE_DIR, "blob-info-cache-v1.boltdb");

type Run = { argv: string[]; code: number; stdout: string; stderr: string };

function fmt(r: Run): string {
  return `$ ${r.argv.join(" ")}\nexit ${r.code}\n--- stdout:\n${r.stdout}\n--- stderr:\n${r.stderr}`;
}

function which(cmd: string): boolean {
  return Bun.spawnSync(["sh", "-c", `command -v ${cmd}`], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}

/** Containers' conflist: weave-net then portmap, as `weave setup-cni` writes it, under our test name. */
function conflist(socket: string) {
  return {
    cniVersion: "1.0.0",
    name: NET,
    plugins: [
      { name: NET, type: "weave-net", hairpinMode: true, socket },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
}

describe.skipIf(!canRunHost)("podman (CNI backend) runs containers on weave-net", () => {
  let lab: TestLab | undefined;
  let dir = "";
  let env: Record<string, string> = {};
  const prefix = uniqueName("pm");
  /** Every container name this run asked podman for, removed by name in afterAll. */
  const names: string[] = [];
  /** Every podman call and its output, for failure messages. */
  const log: Run[] = [];
  /** Container ids podman reported, to clean their libcni cache entries if podman left any. */
  const ids: string[] = [];
  const had = {
    cniCache: existsSync(CNI_CACHE),
    cniResults: existsSync(CNI_RESULTS),
    imageCacheRoot: existsSync(IMAGE_CACHE_ROOT),
    imageCacheDir: existsSync(IMAGE_CACHE_DIR),
    imageCacheFile: existsSync(IMAGE_CACHE_FILE),
  };

  function podman(args: string[], stdin?: string): Run {
    const argv = ["nsenter", `--net=/var/run/netns/${lab!.node}`, "podman", ...args];
    const r = Bun.spawnSync(argv, {
      env,
      stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
      stdout: "pipe",
      stderr: "pipe",
      timeout: 90_000,
    });
    const run = {
      argv: ["podman", ...args],
      code: r.exitCode ?? -1,
      stdout: r.stdout.toString(),
      stderr: r.stderr.toString(),
    };
    log.push(run);
    return run;
  }

  /** Output of the last few podman calls, for assertions that are not about one call. */
  function recent(n = 6): string {
    return `recent podman calls:\n${log.slice(-n).map(fmt).join("\n")}`;
  }

  /** podman must succeed; the message carries its whole output, plus the likely cause if podman skipped our conflist. */
  function ok(r: Run): Run {
    let hint = "";
    if (/Error validating CNI config file .*weavetest/.test(r.stderr) || /network not found/.test(r.stderr)) {
      hint =
        "\nHINT: podman skips a conflist when libcni's ValidateNetworkList fails; it asks every plugin for VERSION " +
        "with CNI_NETNS=dummy CNI_IFNAME=dummy CNI_PATH=dummy, and weave-net must answer VERSION whatever those hold.";
    }
    expect(r.code, fmt(r) + hint).toBe(0);
    return r;
  }

  function name(tag: string): string {
    const n = `${prefix}-${tag}`;
    names.push(n);
    return n;
  }

  /** `podman run -d`; returns the container id. */
  function runDetached(n: string, args: string[]): string {
    const r = ok(podman(["run", "-d", "--name", n, "--network", NET, ...args]));
    const id = r.stdout.trim().split("\n").pop()!.trim();
    expect(id, fmt(r)).toMatch(/^[0-9a-f]{64}$/);
    ids.push(id);
    return id;
  }

  function containerIp(n: string): string {
    const r = ok(podman(["exec", n, "ip", "-o", "-4", "addr", "show", "dev", "eth0"]));
    const m = POD_IP_RE.exec(r.stdout);
    expect(m, `no address in 10.32.0.0/12 on eth0 of ${n}\n${fmt(r)}`).not.toBeNull();
    return m![1]!;
  }

  function natRules(): string {
    const r = lab!.exec(lab!.node, ["iptables", "-t", "nat", "-S"]);
    expect(r.code, `iptables -t nat -S in the node failed: ${r.stderr}`).toBe(0);
    return r.stdout;
  }

  beforeAll(async () => {
    const missing = ["podman", "runc", "conmon", "nsenter", "iptables"].filter((c) => !which(c));
    if (!existsSync(BUSYBOX)) missing.push(`${BUSYBOX} (busybox-static)`);
    if (missing.length)
      throw new Error(`podman e2e needs: ${missing.join(", ")} (apt-get install podman runc busybox-static)`);

    dir = mkdtempSync(join(tmpdir(), "weave-podman-"));
    for (const d of ["net.d", "root", "runroot", "tmp", "home", "rootfs/bin", "www"])
      mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(
      join(dir, "containers.conf"),
      [
        "[containers]",
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
        'log_driver = "k8s-file"',
        "[network]",
        'network_backend = "cni"',
        `cni_plugin_dirs = [${JSON.stringify(PLUGIN_DIR)}, ${JSON.stringify(REF_PLUGINS)}]`,
        `network_config_dir = ${JSON.stringify(join(dir, "net.d"))}`,
        "[engine]",
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "none"',
        `tmp_dir = ${JSON.stringify(join(dir, "tmp"))}`,
        `static_dir = ${JSON.stringify(join(dir, "root/libpod"))}`,
        `volume_path = ${JSON.stringify(join(dir, "root/volumes"))}`,
        `image_copy_tmp_dir = ${JSON.stringify(join(dir, "tmp"))}`,
        "",
      ].join("\n"),
    );
    writeFileSync(
      join(dir, "storage.conf"),
      [
        "[storage]",
        'driver = "vfs"',
        `graphroot = ${JSON.stringify(join(dir, "root"))}`,
        `runroot = ${JSON.stringify(join(dir, "runroot"))}`,
        "",
      ].join("\n"),
    );
    writeFileSync(join(dir, "www", "index.html"), "hello from weave\n");
    env = {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: join(dir, "home"),
      TMPDIR: join(dir, "tmp"),
      CONTAINERS_CONF: join(dir, "containers.conf"),
      CONTAINERS_STORAGE_CONF: join(dir, "storage.conf"),
    };

    // A busybox image without a registry.
    const bin = join(dir, "rootfs/bin");
    copyFileSync(BUSYBOX, join(bin, "busybox"));
    chmodSync(join(bin, "busybox"), 0o755);
    for (const a of APPLETS) symlinkSync("busybox", join(bin, a));
    const tar = Bun.spawnSync(["tar", "-C", join(dir, "rootfs"), "-cf", join(dir, "rootfs.tar"), "."], {
      stdout: "pipe",
      stderr: "pipe",
    });
    if (tar.exitCode !== 0) throw new Error(`tar of the busybox rootfs failed: ${tar.stderr}`);

    lab = await startLab({ nodes: 1, pods: 0 });
    writeFileSync(join(dir, "net.d", `${NET}.conflist`), JSON.stringify(conflist(lab!.socket), null, 2));
    ok(podman(["import", "--change", 'CMD ["/bin/sh"]', join(dir, "rootfs.tar"), IMAGE]));
  }, 180_000);

  afterAll(async () => {
    const problems: string[] = [];
    try {
      if (lab && dir) {
        for (const n of names) {
          const r = podman(["rm", "-f", "-t", "0", "--ignore", n]);
          if (r.code !== 0) problems.push(fmt(r));
        }
        if (names.length) podman(["rmi", "-f", IMAGE]);
      }
    } finally {
      try {
        if (lab) await lab.down();
      } finally {
        if (dir) {
          // podman unmounts a container's shm when it removes it; anything still mounted
          // under our dir is ours: unmount it (by exact path) before deleting the dir.
          const mounts = readFileSync("/proc/self/mountinfo", "utf8")
            .split("\n")
            .map((l) => l.split(" ")[4] ?? "")
            .filter((m) => m.startsWith(`${dir}/`))
            .sort((a, b) => b.length - a.length);
          for (const m of mounts) Bun.spawnSync(["umount", "-l", m]);
          rmSync(dir, { recursive: true, force: true });
        }
        // Machine-level caches podman wrote: only what this run created.
        for (const id of ids) rmSync(join(CNI_RESULTS, `${NET}-${id}-eth0`), { force: true });
        const rmdirIfEmpty = (d: string) => {
          try {
            if (existsSync(d) && readdirSync(d).length === 0) rmdirSync(d);
          } catch {}
        };
        if (!had.cniResults) rmdirIfEmpty(CNI_RESULTS);
        if (!had.cniCache) rmdirIfEmpty(CNI_CACHE);
        if (!had.imageCacheFile) rmSync(IMAGE_CACHE_FILE, { force: true });
        if (!had.imageCacheDir) rmdirIfEmpty(IMAGE_CACHE_DIR);
        if (!had.imageCacheRoot) rmdirIfEmpty(IMAGE_CACHE_ROOT);
      }
    }
    if (problems.length) console.warn(`podman cleanup problems:\n${problems.join("\n")}`);
  }, 180_000);

  test("podman loads the weavetest conflist", () => {
    const r = ok(podman(["network", "inspect", NET]));
    const nets = JSON.parse(r.stdout);
    expect(nets[0]?.name, fmt(r)).toBe(NET);
    // podman only warns (and then ignores the file) when a conflist fails validation.
    expect(r.stderr, fmt(r)).not.toMatch(/Error validating CNI config file/);
  });

  test("podman run --rm: eth0 gets an address in 10.32.0.0/12, released afterwards", async () => {
    const heldBefore = lab!.held();
    const vethsBefore = await lab!.veths();
    const r = ok(
      podman([
        "run",
        "--rm",
        "--name",
        name("once"),
        "--network",
        NET,
        IMAGE,
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
      ]),
    );
    expect(r.stdout, fmt(r)).toMatch(POD_IP_RE);
    expect(lab!.held(), recent()).toEqual(heldBefore);
    expect(await lab!.veths(), recent()).toEqual(vethsBefore);
  }, 120_000);

  test("two containers: distinct addresses, ping each other, podman rm -f releases both", async () => {
    const vethsBefore = await lab!.veths();
    const [a, b] = [name("a"), name("b")];
    const idA = runDetached(a, [IMAGE, "sleep", "300"]);
    const idB = runDetached(b, [IMAGE, "sleep", "300"]);
    const ipA = containerIp(a);
    const ipB = containerIp(b);
    expect(ipA, recent()).not.toBe(ipB);

    // podman recorded the address weave-net's result gave it.
    const insp = ok(podman(["inspect", "-f", `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, a]));
    expect(insp.stdout.trim(), fmt(insp)).toBe(ipA);

    // The agent holds both, under podman's container ids.
    const held = lab!.held();
    expect(
      held.some((l) => l.startsWith(`${ipA}/`) && l.includes(idA)),
      `agent holds:\n${held.join("\n")}`,
    ).toBe(true);
    expect(
      held.some((l) => l.startsWith(`${ipB}/`) && l.includes(idB)),
      `agent holds:\n${held.join("\n")}`,
    ).toBe(true);

    ok(podman(["exec", a, "ping", "-c1", "-W2", ipB]));
    ok(podman(["exec", b, "ping", "-c1", "-W2", ipA]));

    ok(podman(["rm", "-f", "-t", "0", a, b]));
    const after = lab!.held();
    expect(
      after.filter((l) => l.includes(idA) || l.includes(idB) || l.startsWith(`${ipA}/`) || l.startsWith(`${ipB}/`)),
      `agent still holds:\n${after.join("\n")}\n${recent()}`,
    ).toEqual([]);
    expect(await lab!.veths(), recent()).toEqual(vethsBefore);
  }, 120_000);

  /** A busybox httpd container published on the node's port 8080; returns its id and address. */
  function startWeb(tag: string): { n: string; id: string; ip: string } {
    const n = name(tag);
    const id = runDetached(n, [
      "-p",
      "8080:80",
      "-v",
      `${join(dir, "www")}:/www:ro`,
      IMAGE,
      "httpd",
      "-f",
      "-p",
      "80",
      "-h",
      "/www",
    ]);
    return { n, id, ip: containerIp(n) };
  }

  const GET = "GET / HTTP/1.0\r\n\r\n";
  const PAGE = "hello from weave";

  test("podman -p 8080:80: portmap's DNAT on the node reaches the container; rm -f removes the rules", async () => {
    const vethsBefore = await lab!.veths();
    const nodeIp = lab!.state.nodes[0]!.ip;
    const web = startWeb("web");
    const rules = natRules();
    expect(rules, rules).toMatch(new RegExp(`--dport 8080 .*--to-destination ${web.ip.replace(/\./g, "\\.")}:80`));

    // From the node itself to its own address: OUTPUT-chain DNAT to the container.
    // httpd may not listen yet right after `run -d`: a few attempts (count-bounded, not timed).
    const ncFromNode = () => {
      const r = Bun.spawnSync(
        ["nsenter", `--net=/var/run/netns/${lab!.node}`, BUSYBOX, "nc", "-w", "3", nodeIp, "8080"],
        { stdin: Buffer.from(GET), stdout: "pipe", stderr: "pipe" },
      );
      return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
    };
    let fromNode = ncFromNode();
    for (let i = 0; i < 20 && !fromNode.stdout.includes(PAGE); i++) {
      await Bun.sleep(100);
      fromNode = ncFromNode();
    }
    expect(
      fromNode.stdout,
      `node -> ${nodeIp}:8080: exit ${fromNode.code}\n${fromNode.stdout}\n${fromNode.stderr}\n${recent()}`,
    ).toContain(PAGE);

    ok(podman(["rm", "-f", "-t", "0", web.n]));
    const after = natRules();
    expect(after, after).not.toMatch(/--dport 8080 /);
    expect(after, after).not.toContain(`${web.ip}:80`);
    expect(
      lab!.held().filter((l) => l.includes(web.id)),
      recent(),
    ).toEqual([]);
    expect(await lab!.veths(), recent()).toEqual(vethsBefore);
  }, 120_000);

  // A pod reaching a hostPort of its own node: in through weave, DNAT, and routed back out
  // through weave by the node, so the node must forward IPv4 (the reference bridge plugin
  // turns net.ipv4.ip_forward on for its gateway; Kubernetes nodes have it on).
  test("a container reaches another through the node's hostPort (DNAT + routed back through weave)", async () => {
    const vethsBefore = await lab!.veths();
    const nodeIp = lab!.state.nodes[0]!.ip;
    const web = startWeb("web2");
    const client = name("client");
    runDetached(client, [IMAGE, "sleep", "300"]);
    let r = podman(["exec", "-i", client, "nc", "-w", "3", nodeIp, "8080"], GET);
    for (let i = 0; i < 20 && !r.stdout.includes(PAGE) && !/timed out/.test(r.stderr); i++) {
      await Bun.sleep(100); // httpd not listening yet: connection refused
      r = podman(["exec", "-i", client, "nc", "-w", "3", nodeIp, "8080"], GET);
    }
    const fwd = lab!.exec(lab!.node, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.trim();
    expect(
      r.stdout,
      `${fmt(r)}\nnode net.ipv4.ip_forward = ${fwd}${fwd === "0" ? " (the node does not route, so the DNATed packet cannot go back out through weave)" : ""}`,
    ).toContain(PAGE);

    ok(podman(["rm", "-f", "-t", "0", web.n, client]));
    expect(
      lab!.held().filter((l) => l.includes(web.id)),
      recent(),
    ).toEqual([]);
    expect(await lab!.veths(), recent()).toEqual(vethsBefore);
  }, 120_000);
});
