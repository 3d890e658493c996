/**
 * Pieces shared by the lab benchmarks (bench/cni.ts, datapath.ts, agent.ts, ipam.ts): one
 * process runs one benchmark, so the signal state and the set of tracked pids here are
 * per process. Messages name the benchmark: every function that prints takes its name
 * ("cni", "ipam", ...) and prefixes "bench/<name>: ".
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { labDown } from "../net/lab/lab.ts";
import { readLab } from "../net/lab/state.ts";
import type { LabTools } from "../net/lab/plugin.ts";
import { deleteNamedNetns } from "../net/host/netns.ts";
import { tools } from "../tests/support/lab.ts";

/** PATH for the commands the benchmarks run. */
export const PATH = process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin";

/** A failure the benchmark explains itself: reported by its message, without a stack. */
export class BenchError extends Error {}

/** Print `bench/<bench>: <msg>` to stderr and exit 2 (usage or missing prerequisite). */
export function failer(bench: string): (msg: string) => never {
  return (msg) => {
    process.stderr.write(`bench/${bench}: ${msg}\n`);
    process.exit(2);
  };
}

/** A logger to stderr, silent with --json (stdout then carries only the JSON line). */
export function stderrLog(json: boolean): (msg: string) => void {
  return (msg) => {
    if (!json) process.stderr.write(`${msg}\n`);
  };
}

// ---------------------------------------------------------------------------------------
// Arguments.

export type Flag = {
  /** The argument as given, e.g. "--pods=5". */
  arg: string;
  /** The flag part: "--pods" for both "--pods 5" and "--pods=5". */
  flag: string;
  /** The part after "=", if the argument had one. */
  inline: string | undefined;
  /** The flag's value: the inline part, else the next argument (consumed). */
  value(): string | undefined;
  /** The value as an integer in [min, max], else fail with `<flag> "<v>" must be an integer from min to max`. */
  int(min: number, max: number): number;
  /** Fail as for an unknown argument. */
  unknown(): never;
};

/**
 * Walk `argv`: `handle` is called for each argument and returns whether it knew it. Not
 * known: `-h`/`--help` print `usage` and exit 0; anything else fails with `unknownMsg(arg)`
 * (default: `unknown argument "<arg>"` and the usage).
 */
export function parseFlags(
  argv: string[],
  fail: (msg: string) => never,
  usage: string,
  handle: (f: Flag) => boolean,
  unknownMsg = (a: string) => `unknown argument "${a}"\n${usage}`,
): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const [flag, inline] = eq >= 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const f: Flag = {
      arg,
      flag,
      inline,
      value: () => inline ?? argv[++i],
      int(min, max) {
        const v = f.value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < min || n > max) fail(`${flag} "${v}" must be an integer from ${min} to ${max}`);
        return n;
      },
      unknown: () => fail(unknownMsg(arg)),
    };
    if (handle(f)) continue;
    if (flag === "-h" || flag === "--help") {
      console.log(usage);
      process.exit(0);
    }
    f.unknown();
  }
}

export type QuietOpts = { quiet: number; quietSeconds: number; quietMax: number };
/** The quiet gate's defaults: >= 90 % idle over 3 s, waiting at most 120 s. */
export const QUIET_DEFAULTS: QuietOpts = { quiet: 90, quietSeconds: 3, quietMax: 120 };

/** Handle --quiet PCT, --quiet-seconds S and --quiet-max S into `o`; false for other flags. */
export function quietFlag(f: Flag, o: QuietOpts): boolean {
  if (f.flag === "--quiet") o.quiet = f.int(0, 100);
  else if (f.flag === "--quiet-seconds") o.quietSeconds = f.int(1, 60);
  else if (f.flag === "--quiet-max") o.quietMax = f.int(0, 3600);
  else return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Prerequisites, names, binaries.

/** Fail unless running as root. */
export function requireRoot(fail: (msg: string) => never): void {
  if (process.getuid?.() !== 0) fail("needs root (network namespaces)");
}

/** Fail unless dist/weave and dist/cni/weave-net exist. */
export function requireBuild(fail: (msg: string) => never): void {
  for (const f of [tools.weave[0]!, tools.plugin]) if (!existsSync(f)) fail(`${f} does not exist; run: bun run build`);
}

/**
 * A lab name: `prefix` + `chars` base-36 characters, from the pid shifted left by
 * `randomChars` characters plus that many random ones (so a reused pid never collides).
 */
export function labName(prefix: string, chars = 6, randomChars = 2): string {
  const r = 36 ** randomChars;
  const n = (process.pid * r + Math.floor(Math.random() * r)) % 36 ** chars;
  return prefix + n.toString(36).padStart(chars, "0");
}

export type Snapshot = {
  /** The temp dir, bench-<bench>-<name>-XXXXXX; the benchmark removes it in its cleanup. */
  tmp: string;
  /** <tmp>/weave, the agent binary. */
  weaveBin: string;
  /** <tmp>/cni, the plugin's directory (CNI_PATH). */
  pluginDir: string;
  /** <tmp>/cni/weave-net, the plugin binary. */
  pluginBin: string;
  /** dist/weave's modification time (ISO): names the build measured (both binaries come from one build). */
  build: string;
};

/**
 * Make the temp dir and hard-link (else copy) dist/weave and the plugin (default
 * dist/cni/weave-net) into it: a rebuild of dist/ during the run (rm + write) then cannot
 * swap or remove them under the benchmark. Fails (exit 2) if that cannot be done.
 */
export function snapshotBinaries(
  bench: string,
  name: string,
  fail: (msg: string) => never,
  plugin = tools.plugin,
): Snapshot {
  const tmp = mkdtempSync(join(tmpdir(), `bench-${bench}-${name}-`));
  const pluginDir = join(tmp, "cni");
  const s = { tmp, weaveBin: join(tmp, "weave"), pluginDir, pluginBin: join(pluginDir, "weave-net") };
  try {
    mkdirSync(pluginDir);
    for (const [from, to] of [
      [resolve(tools.weave[0]!), s.weaveBin],
      [resolve(plugin), s.pluginBin],
    ] as const) {
      try {
        linkSync(from, to);
      } catch {
        copyFileSync(from, to);
      }
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    fail(`cannot snapshot the binaries into ${tmp}: ${(e as Error).message}`);
  }
  return { ...s, build: statSync(s.weaveBin).mtime.toISOString() };
}

// ---------------------------------------------------------------------------------------
// Processes we start, tracked by pid until they exit, so cleanup (and a signal) can end
// exactly those.

export const running = new Set<number>();

/** SIGTERM every tracked process. */
export function killTracked(): void {
  for (const pid of running) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* gone already */
    }
  }
}

/** SIGTERM every tracked process, give them 1 s to exit, then SIGKILL what is left. */
export async function endTracked(): Promise<void> {
  killTracked();
  for (let i = 0; i < 50 && running.size; i++) await Bun.sleep(20);
  for (const pid of running) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

// ---------------------------------------------------------------------------------------
// Signals: SIGINT/SIGTERM only mark the run interrupted (and end tracked processes); the
// benchmark notices at its next checkpoint(), aborts, cleans up and exits 130.

let interruptedBy = "";

/** The signal that interrupted the run ("SIGINT", "SIGTERM"), or "" if none did. */
export function interrupted(): string {
  return interruptedBy;
}

/** Install the SIGINT/SIGTERM handlers; `bench` names the benchmark in the message. */
export function handleSignals(bench: string): void {
  const onSignal = (sig: string) => () => {
    if (interruptedBy) return;
    interruptedBy = sig;
    process.stderr.write(`\nbench/${bench}: ${sig}, stopping and cleaning up...\n`);
    killTracked();
  };
  process.on("SIGINT", onSignal("SIGINT"));
  process.on("SIGTERM", onSignal("SIGTERM"));
}

/** Throw a BenchError if a signal came. */
export function throwIfInterrupted(): void {
  if (interruptedBy) throw new BenchError(`interrupted by ${interruptedBy}`);
}

/** Let pending signal handlers run (the loops are synchronous otherwise); stop if one did. */
export async function checkpoint(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  throwIfInterrupted();
}

// ---------------------------------------------------------------------------------------
// Quiet gate: the machine is shared (2 CPUs); a measurement starts only after the CPUs
// were mostly idle for a few seconds, so another job's burst is less likely to fall in it.

function cpuTimes(): { idle: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is inside user already)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: f[3]! + f[4]!, total };
}

/**
 * Wait until the CPUs were >= pct % idle over the last `seconds`; quiet is false if `maxS`
 * passed first. Says once (after 5 s) that it is waiting. Checkpoints while waiting.
 */
export async function waitQuiet(
  pct: number,
  seconds: number,
  maxS: number,
  log: (m: string) => void,
): Promise<{ quiet: boolean; idlePct: number; waitedS: number }> {
  const t0 = performance.now();
  const hist: { t: number; c: { idle: number; total: number } }[] = [{ t: t0, c: cpuTimes() }];
  let said = false;
  for (;;) {
    await Bun.sleep(250);
    await checkpoint();
    const now = performance.now();
    hist.push({ t: now, c: cpuTimes() });
    while (hist.length > 2 && now - hist[1]!.t >= seconds * 1000) hist.shift();
    const a = hist[0]!;
    const b = hist[hist.length - 1]!;
    const idlePct = b.c.total > a.c.total ? ((b.c.idle - a.c.idle) / (b.c.total - a.c.total)) * 100 : 100;
    if (now - a.t >= seconds * 1000 - 1 && idlePct >= pct) return { quiet: true, idlePct, waitedS: (now - t0) / 1000 };
    if (now - t0 >= maxS * 1000) return { quiet: false, idlePct, waitedS: (now - t0) / 1000 };
    if (!said && now - t0 > 5000) {
      log(`waiting for the machine to be ${pct} % idle over ${seconds} s (now ${idlePct.toFixed(0)} %)...`);
      said = true;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Cleanup steps: each adds what went wrong to `problems` instead of throwing.

/** Delete the named namespaces, last made first. */
export function deleteNamespaces(made: string[], problems: string[]): void {
  for (const n of [...made].reverse()) {
    try {
      deleteNamedNetns(n);
    } catch (e) {
      problems.push(`delete namespace ${n}: ${(e as Error).message}`);
    }
  }
}

/** labDown `name` if it still has state. */
export async function downLab(name: string, t: LabTools, problems: string[]): Promise<void> {
  if (!readLab(name)) return;
  try {
    problems.push(...(await labDown(name, t)));
  } catch (e) {
    problems.push(`lab down ${name}: ${(e as Error).message}`);
  }
}

/** Remove the temp dir. */
export function removeTmp(tmp: string, problems: string[]): void {
  try {
    rmSync(tmp, { recursive: true, force: true });
  } catch (e) {
    problems.push(`remove ${tmp}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------
// Ending a run.

/**
 * Report an aborted run (a BenchError by its message, anything else with its stack), run
 * the cleanup, report its problems; the exit code: 130 if interrupted, else 1.
 */
export async function abort(bench: string, e: unknown, cleanup: () => Promise<string[]>): Promise<number> {
  process.stderr.write(
    `bench/${bench}: ABORTED: ${e instanceof BenchError ? e.message : ((e as Error)?.stack ?? e)}\n`,
  );
  const cp = await cleanup();
  for (const p of cp) process.stderr.write(`bench/${bench}: WARNING (cleanup): ${p}\n`);
  return interruptedBy ? 130 : 1;
}

/** Print each problem as `bench/<bench>: WARNING: <p>` to stderr. */
export function warn(bench: string, problems: string[]): void {
  for (const p of problems) process.stderr.write(`bench/${bench}: WARNING: ${p}\n`);
}

/** Print the result: always the last stdout line, one line of JSON. */
export function printResult(out: unknown): void {
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------------------------------
// Statistics and rounding.

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const r1 = (x: number) => Math.round(x * 10) / 10;
export const r2 = (x: number) => Math.round(x * 100) / 100;
export const r3 = (x: number) => Math.round(x * 1000) / 1000;
