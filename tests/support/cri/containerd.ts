/**
 * One containerd per lab node, as the runtime kubelet would talk to there: started inside
 * the node's network namespace (`nsenter --net=...`, not `ip netns exec`, which remounts
 * /sys), with root, state, socket, config and CNI bin dir all under one directory of its
 * own, so two runs or two nodes never share anything. Whatever a run made is removed by
 * path or pid, also after a failure: `stopContainerd` kills the daemon by its pid, then any
 * sandbox process it left (the init.pid in the sandbox's task dir, checked against the
 * process's cgroup, which names the sandbox id, so a reused pid is never hit) and shim
 * (shims write no pid file: the containerd-shim-runc-v2 whose argv has `-address <this
 * socket>`, a path unique to the run), removes the sandbox network namespaces their
 * bundles name, unmounts what is mounted under the directory (deepest first, `umount -R`
 * by path) and deletes it. What containerd writes outside its dirs is host-leftovers.ts's
 * job. A containerd that does not come up is cleaned the same way before the error.
 *
 * The CNI bin dir holds links to the reference portmap and loopback (containerd brings up
 * every sandbox's lo with the loopback plugin) and, under the name weave-net, a tiny sh
 * wrapper that runs the real dist/cni/weave-net with the same argv, env, stdin and stdout
 * and appends one line per call to cni-calls.log: command, container id, CNI_NETNS, whether
 * that netns existed at the call, exit code. It is how the test sees what containerd asked
 * of the plugin (there is no other record) and that each call succeeded.
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { containerdConfigToml, type ContainerdPaths } from "./containerd-config.ts";
import { CriClient } from "./cri-client.ts";

export const K8S_NAMESPACE = "k8s.io"; // the containerd namespace the CRI plugin keeps everything in
const PATH = `${process.env.PATH ?? ""}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

export type Containerd = {
  netns: string;
  dir: string;
  paths: ContainerdPaths;
  pid: number;
  /** containerd's stdout+stderr. */
  logFile: string;
  /** One line per weave-net call: "<COMMAND> <containerid> <netns> <present|absent> <exit code>". */
  cniCallsFile: string;
  cri: CriClient;
};

export type CniCall = { command: string; containerId: string; netns: string; netnsPresent: boolean; code: number };

export type Run = { argv: string[]; code: number; stdout: string; stderr: string };

export function fmtRun(r: Run): string {
  return `$ ${r.argv.join(" ")}\nexit ${r.code}\n--- stdout:\n${r.stdout}\n--- stderr:\n${r.stderr}`;
}

function pluginWrapper(plugin: string, callsFile: string): string {
  return [
    "#!/bin/sh",
    "# Test instrumentation (tests/support/cri/containerd.ts): run weave-net, record the call.",
    'if [ -n "$CNI_NETNS" ] && [ -e "$CNI_NETNS" ]; then ns=present; else ns=absent; fi',
    `${JSON.stringify(plugin)} "$@"`,
    "rc=$?",
    `printf '%s %s %s %s %s\\n' "$CNI_COMMAND" "\${CNI_CONTAINERID:--}" "\${CNI_NETNS:--}" "$ns" "$rc" >> ${JSON.stringify(callsFile)}`,
    "exit $rc",
    "",
  ].join("\n");
}

export function cniCalls(c: Containerd): CniCall[] {
  if (!existsSync(c.cniCallsFile)) return [];
  return readFileSync(c.cniCallsFile, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [command = "", containerId = "", netns = "", present = "", code = ""] = l.split(" ");
      return {
        command,
        containerId,
        netns: netns === "-" ? "" : netns,
        netnsPresent: present === "present",
        code: +code,
      };
    });
}

export function logTail(c: Containerd, lines = 20): string {
  if (!existsSync(c.logFile)) return "(no containerd log)";
  return readFileSync(c.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
}

/** Run `ctr` against this containerd, in the CRI plugin's namespace. */
export function ctr(c: Containerd, args: string[]): Run {
  const argv = ["ctr", "--address", c.paths.socket, "-n", K8S_NAMESPACE, ...args];
  const r = Bun.spawnSync(argv, { env: { PATH }, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  return { argv, code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * Start containerd for one lab node. `dir` must not exist yet or be empty; `plugin` is
 * dist/cni/weave-net, `refPlugins` the directory of Debian's portmap and loopback.
 */
export async function startContainerd(o: {
  dir: string;
  netns: string;
  cniConfDir: string;
  sandboxImage: string;
  plugin: string;
  refPlugins: string;
  timeoutMs?: number;
}): Promise<Containerd> {
  const paths: ContainerdPaths = {
    root: join(o.dir, "root"),
    state: join(o.dir, "state"),
    socket: join(o.dir, "containerd.sock"),
    opt: join(o.dir, "opt"),
  };
  const binDir = join(o.dir, "cni-bin");
  for (const d of [paths.root, paths.state, paths.opt, binDir]) mkdirSync(d, { recursive: true });
  const cniCallsFile = join(o.dir, "cni-calls.log");
  writeFileSync(join(binDir, "weave-net"), pluginWrapper(o.plugin, cniCallsFile), { mode: 0o755 });
  for (const p of ["portmap", "loopback"]) symlinkSync(join(o.refPlugins, p), join(binDir, p));
  const config = join(o.dir, "config.toml");
  writeFileSync(
    config,
    containerdConfigToml({ ...paths, cniBinDir: binDir, cniConfDir: o.cniConfDir, sandboxImage: o.sandboxImage }),
  );

  const logFile = join(o.dir, "containerd.log");
  const fd = openSync(logFile, "a");
  let pid = 0;
  try {
    // nsenter without --fork execs containerd: the pid is containerd's own.
    const child = spawn("nsenter", [`--net=/var/run/netns/${o.netns}`, "containerd", "--config", config], {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: { PATH },
    });
    child.unref();
    pid = child.pid ?? 0;
  } finally {
    closeSync(fd);
  }
  if (!pid) throw new Error(`could not start containerd for ${o.netns}`);
  // Every CRI call times out after 60 s, so a wedged runtime fails the test instead of hanging it.
  const c: Containerd = {
    netns: o.netns,
    dir: o.dir,
    paths,
    pid,
    logFile,
    cniCallsFile,
    cri: new CriClient(paths.socket),
  };

  // Ready when the socket answers a Version call; one that dies or never answers is cleaned up, then reported.
  const timeoutMs = o.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  const serving = () =>
    c.cri.version().then(
      () => true,
      () => false,
    );
  let failure = "";
  while (!failure) {
    if (!alive(pid)) failure = "exited";
    else if (Date.now() > deadline) failure = `was not serving after ${timeoutMs} ms`;
    else if (existsSync(paths.socket) && (await serving())) return c;
    else await Bun.sleep(50);
  }
  const log = logTail(c);
  const problems = await stopContainerd(c);
  throw new Error(`containerd for ${o.netns} ${failure}:\n${log}${problems.length ? `\n${problems.join("\n")}` : ""}`);
}

/** Sandbox task dirs containerd's runc shim keeps under its state dir, one per sandbox still known. */
function taskDirs(c: Containerd): { id: string; dir: string }[] {
  const base = join(c.paths.state, "io.containerd.runtime.v2.task", K8S_NAMESPACE);
  if (!existsSync(base)) return [];
  return readdirSync(base).map((id) => ({ id, dir: join(base, id) }));
}

function readPid(file: string): number {
  try {
    return Number.parseInt(readFileSync(file, "utf8").trim(), 10) || 0;
  } catch {
    return 0;
  }
}

/** SIGKILL `pid` if it is alive and `isOurs` (a dead shim's pid may belong to someone else by now); true if sent. */
function killIf(pid: number, isOurs: (proc: string) => boolean, problems: string[], what: string): boolean {
  if (!pid || !alive(pid) || !isOurs(`/proc/${pid}`)) return false;
  try {
    process.kill(pid, "SIGKILL");
    problems.push(`${what} (pid ${pid}) was still running at cleanup; killed`);
    return true;
  } catch (e) {
    problems.push(`kill ${what} ${pid}: ${(e as Error).message}`);
    return false;
  }
}

function read(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** containerd-shim-runc-v2 processes started for the containerd at `socket` (argv "-address <socket>"). */
function shimPids(socket: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const argv = read(`/proc/${name}/cmdline`).split("\0");
    const at = argv.indexOf("-address");
    if (basename(argv[0] ?? "") === "containerd-shim-runc-v2" && at > 0 && argv[at + 1] === socket && alive(+name))
      pids.push(+name);
  }
  return pids;
}

/** Mount points at or under `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  return read("/proc/self/mountinfo")
    .split("\n")
    .map((l) => (l.split(" ")[4] ?? "").replace(/\\040/g, " "))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Stop containerd and remove everything under its dir; returns what could not be done
 * (empty when all went). Sandboxes should have been stopped and removed through the CRI
 * first; this also copes when they were not.
 */
export async function stopContainerd(c: Containerd): Promise<string[]> {
  const problems: string[] = [];
  c.cri.close();
  if (c.pid && alive(c.pid)) {
    process.kill(c.pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(c.pid); i++) await Bun.sleep(50);
    if (alive(c.pid)) {
      process.kill(c.pid, "SIGKILL");
      problems.push(`containerd ${c.pid} ignored SIGTERM for 5 s; killed`);
    }
  }

  // Shims outlive containerd by design; a sandbox still running keeps its shim and init.
  for (const t of taskDirs(c)) {
    const initPid = readPid(join(t.dir, "init.pid"));
    killIf(initPid, (p) => read(`${p}/cgroup`).includes(t.id), problems, `sandbox ${t.id.slice(0, 12)}`);
    let spec: { linux?: { namespaces?: { type: string; path?: string }[] } } = {};
    try {
      spec = JSON.parse(read(join(t.dir, "config.json")) || "{}");
    } catch {}
    const netns = spec.linux?.namespaces?.find((n) => n.type === "network")?.path ?? "";
    if (/^\/(var\/)?run\/netns\/cni-[0-9a-f-]+$/.test(netns) && existsSync(netns)) {
      const r = Bun.spawnSync(["ip", "netns", "delete", basename(netns)], { stderr: "pipe" });
      problems.push(
        r.exitCode === 0
          ? `sandbox netns ${netns} was left; deleted`
          : `ip netns delete ${basename(netns)}: ${r.stderr.toString().trim()}`,
      );
    }
  }
  // A shim writes no pid file; it is the process whose argv names this containerd's socket.
  for (const pid of shimPids(c.paths.socket)) killIf(pid, () => true, problems, "containerd shim");
  for (let i = 0; i < 40 && shimPids(c.paths.socket).length; i++) await Bun.sleep(50);

  for (const m of mountsUnder(c.dir)) {
    if (!mountsUnder(c.dir).includes(m)) continue; // went with a parent's umount -R
    const r = Bun.spawnSync(["umount", "-R", m], { stderr: "pipe" });
    if (r.exitCode !== 0) {
      Bun.spawnSync(["umount", "-R", "-l", m]);
      problems.push(`umount -R ${m}: ${r.stderr.toString().trim()} (lazily unmounted)`);
    }
  }
  try {
    rmSync(c.dir, { recursive: true, force: true });
  } catch (e) {
    problems.push(`remove ${c.dir}: ${(e as Error).message}`);
  }
  return problems;
}
