/**
 * Soak: a 5-node lab under a bounded random schedule of faults for --minutes N, with
 * invariants checked the whole time and a report at the end (issue 14, item 3).
 *
 *   bun bench/soak.ts [--minutes N] [--seed S] [--warmup S] [--churn R] [--name LAB] [--logs DIR] [--quiet PCT] [--json]
 *
 * The lab: labUp with 5 nodes and one base pod each (<lab>-n<i>-p1), from hard links of
 * dist/weave and the plugin (as the other benches), encrypted (a random password, in the
 * lab's password file only: WireGuard carries the pods' traffic), then the victim pod
 * <lab>-v (label soak=victim) on a node drawn from the seed; no reachability check
 * includes it. One node, drawn from the seed, is protected: its agent is never killed, so
 * its memory can be followed from the password rotation (below) to the end.
 *
 * The schedule. Every choice comes from one PRNG seeded by --seed (printed), drawn in
 * order at the start of each round, so a seed replays the same sequence of faults (not
 * their exact timing). Rounds until the end, each: one fault, or two (p 0.35) of
 * different kinds, the second started 0-2 s after the first; each healed after a few
 * seconds; then the recovery check; then a quiet spell of 3-8 s. The kinds:
 *   kill    SIGKILL of a node's agent (lab.json's agentPid; never the protected one); once
 *           it is gone, 2-5 s dead, then labAgent start, which waits until it is ready;
 *   cut     labCut of a node (drops its TCP 6783 and UDP 6783-6785) for 2-6 s, then heal;
 *   burst   through the lab's API, at once: the pods of the previous burst deleted
 *           (labPodDel) and 3-6 new ones added (labPodAdd) on nodes drawn at random; they
 *           live until the next burst, so they are in the reachability checks meanwhile;
 *   policy  a NetworkPolicy selecting the victim, ingress from nothing, created: the victim
 *           must be unreachable from every base pod within 10 s (timed to the start of the
 *           first ping round in which all were dropped) and still be after 2-4 s; then
 *           deleted (the heal), and the recovery check wants the victim reachable again;
 *   rotate  once, in a round of its own drawn from the seed among rounds 2-4: labPasswordRotate
 *           to a new random password (current -> current + new -> new, each step restarting
 *           every agent in turn, each waited for until ready and meshed: a mesh that does not
 *           come back within 30 s is a fault), then the recovery check. It restarts every
 *           agent, the protected one too: memory is followed from the agents it started.
 * Beside the schedule, from the rotation until 150 s before warm-up ends (90 s to settle, then
 * the 60 s memory window), the warm-up churn:
 * --churn pods a second (3 at a time, on the nodes in turn whose agents are up) added and
 * deleted, <lab>-w<i>, never pinged. An agent's RssAnon climbs with the work it has done
 * until it levels off (docs/benchmarks.md, "Soak"); at the schedule's own pace that takes
 * hours, so the churn does that work before memory is measured.
 *
 * Invariants; each violation is recorded with its time (seconds from the start of the
 * schedule) and evidence, and the run goes on:
 *   addresses  every 3 s, GET http://127.0.0.1:6784/ip inside each running agent's node
 *              (the read-only TCP API): no address under two container ids across all
 *              agents, no two pods of lab.json with one address, and every running pod's
 *              address held for it by its node's agent (seen on two checks in a row: a
 *              DEL and the pod's removal from lab.json are not one step);
 *   reachable  after each round's last heal, rounds of pings (`ping -c1 -W1` from each
 *              pod's namespace to every other pod, base and burst, and from every base pod
 *              to the victim; 4 sources at a time, each source's pings in parallel) until
 *              one round has every pair answering; within 15 s of the heal (waited for up
 *              to 60 s, to measure). The time to that round's end is the recovery time
 *              (a round with a dropped ping lasts 1 s: the resolution). Once more at the
 *              end of the quiet spell, a failed pair tried twice;
 *   no leak    at the end, after the last burst pods are deleted and a recovery check: the
 *              host veths (vethwepl*, retired ones given 5 s to go) of each node are its
 *              pods' (hostVethName of their container ids); the allocations are the pods'
 *              (also during the run: an allocation without a pod seen twice in a row);
 *              `nft list table inet weave-npc` of each node equals the one taken before
 *              the first fault (counters and element order normalised); every wireguard-go
 *              seen in a node's pid file (every 3 s) is that node's current one or gone (a
 *              restarted agent adopts it rather than starting another), and none is left
 *              after labDown; every agent and
 *              npc of lab.json runs, every agent the soak killed is gone, no other child
 *              process of ours (/proc/<pid>/stat) beyond the control plane, agents and
 *              npcs; no namespace <lab>-* beyond lab.json's; and labDown leaves nothing;
 *   memory     RssAnon (/proc/<pid>/status) of each agent started by the rotation and never
 *              killed, every 3 s: the median of the last 60 s of warm-up (the first quarter,
 *              and at least --warmup, 600 s, after the rotation) against the median of the
 *              last 60 s of the schedule, at most 10 %
 *              more (60 s: one cycle of the garbage collector's sawtooth, 5-10 % even when
 *              idle); not judged when the schedule ends less than 60 s after warm-up
 *              (the 2-minute test passes --warmup 120: under this load the agent's
 *              memory climbs for its first ~2 minutes, and a 2-minute run is all that).
 * Recorded the same way: a policy not enforced in time (policy), an agent, npc or control
 * plane that exited unasked (crash; it is started again before the next round), a fault
 * that could not be injected or healed (fault: an agent not ready 30 s after its start, a
 * pod add or delete that failed). The JSON has each measured agent's RssAnon curve too
 * (the median of each 30 s).
 *
 * Prints a timeline to stderr, then a table and, always as the last stdout line, one
 * JSON line (only that with --json). Exit: 0 no violation; 1 a violation, or the run
 * aborted; 2 usage or missing prerequisite; 130 interrupted. Cleanup is always done
 * (finally, also on SIGINT/SIGTERM): ping processes by pid, the lab by labDown (agents,
 * npcs and control plane by pid, namespaces by name), the temp dir. docs/benchmarks.md
 * ("Soak") has the 30-minute report.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { hostVethName } from "../net/agent/cni-exec.ts";
import { httpGetInNetns } from "../net/host/netns-http.ts";
import { listNamedNetns } from "../net/host/netns.ts";
import { pidAlive } from "../net/host/process.ts";
import { runningWireguardGo } from "../net/host/wireguard-go.ts";
import { labPodAdd, labPodDel } from "../net/lab/changes.ts";
import { labAgent, labApi, labCut, labUp, meshViews, wgSocketDir } from "../net/lab/lab.ts";
import { labNpc, npcLog } from "../net/lab/npc.ts";
import { labPasswordRotate } from "../net/lab/password.ts";
import { inNs, type LabTools } from "../net/lab/plugin.ts";
import { findNode, type LabNode, type LabPod, type LabState, labDir, mustReadLab, readLab } from "../net/lab/state.ts";
import {
  abort,
  BenchError,
  checkpoint,
  downLab,
  endTracked,
  failer,
  handleSignals,
  interrupted,
  labName,
  median,
  parseFlags,
  PATH,
  printResult,
  QUIET_DEFAULTS,
  type QuietOpts,
  quietFlag,
  r1,
  removeTmp,
  requireBuild,
  requireRoot,
  running,
  snapshotBinaries,
  stderrLog,
  waitQuiet,
} from "./lib.ts";

const NODES = 5;
const CHECK_EVERY_MS = 3000;
const RECOVERY_LIMIT_S = 15;
const RECOVERY_WAIT_S = 60;
const POLICY_ENFORCE_S = 10;
const MEMORY_GROWTH_MAX = 0.1;
const MEMORY_WINDOW_S = 60; // an idle agent's RssAnon saws ~5 % up and down with a ~60 s GC cycle
const WARMUP_MIN_S = 600;
const PING_SOURCES_AT_ONCE = 4;
const TWO_FAULTS_P = 0.35;
const PENDING_GROUP_RE = / group 30565 /; // retired host veths (net/agent/cni-exec.ts PENDING_GROUP)
const POLICY_NAME = "soak-isolate-victim";
const POLICIES = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";
/** The rotation's round is drawn among these. */
const ROTATION_ROUNDS = [2, 4] as const;
/** Warm-up churn: pods a second by default, how many at once, and how long before warm-up's end it stops. */
const CHURN_DEFAULT = 3;
const CHURN_AT_ONCE = 3;
const CHURN_STOP_BEFORE_S = 150;

// ---------------------------------------------------------------------------------------
// Arguments.

type Opts = QuietOpts & {
  minutes: number;
  seed: number;
  warmupS: number;
  churn: number;
  name?: string;
  logs?: string;
  json: boolean;
};

function usage(): string {
  return (
    "usage: bun bench/soak.ts [--minutes N] [--seed S] [--warmup S] [--churn R] [--name LAB] [--logs DIR] [--quiet PCT] [--json]\n" +
    "  --minutes N   length of the fault schedule (default 30)\n" +
    "  --seed S      seed of the schedule, 0-4294967295 (default: random; printed, to replay a run)\n" +
    "  --warmup S    memory warm-up: the first quarter of the schedule, and at least S seconds after the\n" +
    `                password rotation (default ${WARMUP_MIN_S});\n` +
    "                memory is judged only if the schedule goes on at least 60 s after it\n" +
    `  --churn R     warm-up churn: R pods a second added and deleted, from the rotation until ${CHURN_STOP_BEFORE_S} s\n` +
    `                before warm-up ends (default ${CHURN_DEFAULT}; 0: none)\n` +
    "  --name LAB    the lab's name (default so + 6 characters from the pid)\n" +
    "  --logs DIR    copy every agent's, npc's and the control plane's log into DIR before the lab goes\n" +
    "  --quiet PCT   before the schedule wait until the CPUs were at least PCT % idle over --quiet-seconds S\n" +
    "                (default 0: no wait; the machine is shared and a soak does not time anything)\n" +
    "  --json        print only the JSON result line"
  );
}

const fail: (msg: string) => never = failer("soak");

function parseArgs(argv: string[]): Opts {
  const randomSeed = crypto.getRandomValues(new Uint32Array(1))[0]!;
  const o: Opts = {
    ...QUIET_DEFAULTS,
    quiet: 0,
    minutes: 30,
    seed: randomSeed,
    warmupS: WARMUP_MIN_S,
    churn: CHURN_DEFAULT,
    json: false,
  };
  parseFlags(argv, fail, usage(), (f) => {
    if (f.flag === "--json") o.json = true;
    else if (f.flag === "--minutes") o.minutes = f.int(1, 1440);
    else if (f.flag === "--seed") o.seed = f.int(0, 4294967295);
    else if (f.flag === "--warmup") o.warmupS = f.int(0, 86400);
    else if (f.flag === "--churn") o.churn = f.int(0, 30);
    else if (f.flag === "--name") {
      const v = f.value() ?? "";
      if (!/^[a-z][a-z0-9]{0,7}$/.test(v)) fail(`--name "${v}" must be 1-8 lowercase letters or digits, from a letter`);
      o.name = v;
    } else if (f.flag === "--logs") {
      const v = f.value();
      if (!v) fail("--logs needs a directory");
      o.logs = resolve(v);
    } else return quietFlag(f, o);
    return true;
  });
  return o;
}

handleSignals("soak");

// ---------------------------------------------------------------------------------------
// The seeded choices (mulberry32).

type Rng = { int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T; chance(p: number): boolean };

function seededRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
  };
}

// ---------------------------------------------------------------------------------------
// What the run has seen.

type Invariant = "addresses" | "reachable" | "no-leak" | "memory" | "policy" | "crash" | "fault";
const INVARIANTS: { key: Invariant; json: string; title: string }[] = [
  { key: "addresses", json: "addresses", title: "no address held twice, each pod's held" },
  { key: "reachable", json: "reachable", title: `every pod reachable <= ${RECOVERY_LIMIT_S} s after a heal` },
  { key: "no-leak", json: "noLeak", title: "nothing leaked (veths, addresses, nft, processes, netns)" },
  { key: "memory", json: "memoryFlat", title: `agent RssAnon flat after warm-up (<= ${MEMORY_GROWTH_MAX * 100} %)` },
  { key: "policy", json: "policyEnforced", title: "victim isolated while the policy is applied" },
  { key: "crash", json: "noCrash", title: "no agent, npc or control plane exits unasked" },
  { key: "fault", json: "faultsApplied", title: "every fault injected and healed" },
];

type Violation = { t: number; invariant: Invariant; what: string; evidence: string };
/** `since`: the process's start time (/proc/<pid>/stat), to tell it from a later process given the same pid. */
type Kill = { node: string; pid: number; since?: string; killedAt: number; startedAt?: number };
type BurstPod = { name: string; node: string; addedAt?: number; deletedAt?: number; agentDownAtDelete?: boolean };
type Recovery = { round: number; after: string; seconds: number | null };

class Soak {
  private t0 = performance.now();
  private reported = new Set<string>();
  readonly violations: Violation[] = [];
  readonly checks: Record<Invariant, number> = {
    addresses: 0,
    reachable: 0,
    "no-leak": 0,
    memory: 0,
    policy: 0,
    crash: 0,
    fault: 0,
  };
  readonly faults = {
    rounds: 0,
    twoAtOnce: 0,
    kill: 0,
    cut: 0,
    burst: 0,
    policy: 0,
    rotate: 0,
    podsAdded: 0,
    podsDeleted: 0,
    churnAdded: 0,
    churnDeleted: 0,
  };
  readonly recoveries: Recovery[] = [];
  readonly policyEnforceS: number[] = [];
  readonly policyReopenS: number[] = [];
  readonly kills: Kill[] = [];
  /** Nodes whose agent is down on purpose right now. */
  readonly killing = new Set<string>();
  /** Agent pids the soak started (restarts; a list, pids are reused); the first agents are lab.json's at the start. */
  readonly started: number[] = [];
  readonly firstAgents = new Map<number, string>();
  /** The agents whose memory is judged (pid -> node): the first ones, then those the rotation started. */
  measured = new Map<number, string>();
  /** When `measured` was last set (seconds from the start; 0 until the rotation). */
  measuredSince = 0;
  /** The round the password is rotated in (drawn at the start). */
  rotationRound = 0;
  /** Every wireguard-go seen in a node's pid file, by "<pid> <start>" (a pid is reused; the pair is not). */
  readonly wireguardGos = new Map<string, { node: string; pid: number }>();
  readonly burstPods = new Map<string, BurstPod>();
  /** The pods of the last burst, deleted by the next one. */
  outstanding: string[] = [];
  podSeq = 0;
  churnSeq = 0;
  policyApplied = false;
  /** When the policy was last deleted, until the victim is seen reachable again. */
  policyHealAt: number | undefined;
  readonly memory = new Map<number, { node: string; samples: [number, number][] }>();
  /** Allocations without a pod, or pods without their allocation, seen on the last check. */
  suspects = new Set<string>();

  constructor(
    readonly lab: string,
    readonly tools: LabTools,
    readonly rng: Rng,
    readonly protectedNode: string,
    readonly victim: string,
    readonly victimNode: string,
    readonly log: (m: string) => void,
  ) {}

  /** The schedule starts: times are counted from here. */
  start(): void {
    this.t0 = performance.now();
  }

  at(): number {
    return (performance.now() - this.t0) / 1000;
  }

  say(msg: string): void {
    this.log(`[${this.at().toFixed(1).padStart(7)} s] ${msg}`);
  }

  /** Record a violation; one with a `key` already recorded is not recorded again. */
  violate(invariant: Invariant, what: string, evidence: string, key?: string): void {
    if (key !== undefined) {
      if (this.reported.has(key)) return;
      this.reported.add(key);
    }
    this.violations.push({ t: r1(this.at()), invariant, what, evidence });
    this.say(`VIOLATION (${invariant}): ${what}\n    ${evidence.split("\n").join("\n    ")}`);
  }

  state(): LabState {
    return mustReadLab(this.lab);
  }

  node(name: string): LabNode {
    return findNode(this.state(), name);
  }

  short(node: string): string {
    return node.slice(this.lab.length + 1);
  }
}

async function sleepS(seconds: number): Promise<void> {
  const until = performance.now() + seconds * 1000;
  for (let left = seconds * 1000; left > 0; left = until - performance.now()) {
    await Bun.sleep(Math.min(left, 200));
    await checkpoint();
  }
}

async function waitUntil(fn: () => boolean, ms: number): Promise<boolean> {
  for (const end = performance.now() + ms; performance.now() < end; await Bun.sleep(20)) if (fn()) return true;
  return fn();
}

function tail(file: string, lines = 8): string {
  if (!existsSync(file)) return `(no ${file})`;
  return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join("\n");
}

function listed(items: string[], max = 12): string {
  const more = items.length > max ? `\n(${items.length - max} more)` : "";
  return items.slice(0, max).join("\n") + more;
}

// ---------------------------------------------------------------------------------------
// Probes: pings, the agents' allocations, host veths, the npc table, processes.

type Probe = { name: string; netns: string; ip: string };
type Pair = { from: string; to: string; ip: string; ok: boolean };

const probe = (p: LabPod): Probe => ({ name: p.name, netns: p.netns, ip: p.ip });

/** Ping each target from inside `netns`, all at once; the targets' addresses are sh's arguments. */
const PING_EACH = 'for ip; do (ping -c1 -W1 -q "$ip" >/dev/null 2>&1 && echo "ok $ip" || echo "no $ip") & done; wait';

async function pingFrom(source: Probe, targets: Probe[]): Promise<Pair[]> {
  if (!targets.length) return [];
  const argv = ["nsenter", `--net=${source.netns}`, "sh", "-c", PING_EACH, "sh", ...targets.map((t) => t.ip)];
  const p = Bun.spawn(argv, { env: { PATH }, stdin: "ignore", stdout: "pipe", stderr: "ignore" });
  running.add(p.pid);
  const text = await new Response(p.stdout).text();
  await p.exited;
  running.delete(p.pid);
  const answered = new Set(
    text
      .split("\n")
      .filter((l) => l.startsWith("ok "))
      .map((l) => l.slice(3)),
  );
  return targets.map((t) => ({ from: source.name, to: t.name, ip: t.ip, ok: answered.has(t.ip) }));
}

/** One round of pings: each source to its targets, a few sources at a time. */
async function pingRound(plan: { source: Probe; targets: Probe[] }[]): Promise<Pair[]> {
  const queue = [...plan];
  const pairs: Pair[] = [];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) pairs.push(...(await pingFrom(job.source, job.targets)));
  };
  await Promise.all(Array.from({ length: PING_SOURCES_AT_ONCE }, worker));
  return pairs;
}

const pairText = (p: Pair) => `${p.from} -> ${p.to} (${p.ip}): no reply`;

const isChurnPod = (run: Soak, name: string) => name.startsWith(`${run.lab}-w`);

/** The pods of the reachability set (every running pod but the victim and the warm-up churn's) and the base pods. */
function podSets(run: Soak): { pods: Probe[]; base: Probe[]; victim: Probe | undefined } {
  const s = run.state();
  const running = s.pods.filter((p) => p.ip);
  const pods = running.filter((p) => p.name !== run.victim && !isChurnPod(run, p.name)).map(probe);
  const base = pods.filter((p) => /-n\d+-p1$/.test(p.name));
  const victim = running.find((p) => p.name === run.victim);
  return { pods, base, victim: victim && probe(victim) };
}

/** Every pod to every other pod, and (when `withVictim`) every base pod to the victim. */
function matrixPlan(run: Soak, withVictim: boolean): { source: Probe; targets: Probe[] }[] {
  const { pods, base, victim } = podSets(run);
  const toVictim = (source: Probe) => (withVictim && victim && base.includes(source) ? [victim] : []);
  return pods.map((source) => ({ source, targets: [...pods.filter((t) => t !== source), ...toVictim(source)] }));
}

async function victimPairs(run: Soak): Promise<Pair[]> {
  const { base, victim } = podSets(run);
  return victim ? pingRound(base.map((source) => ({ source, targets: [victim] }))) : [];
}

type Held = { node: string; containerId: string; address: string; pod: string };

/** What a node's agent holds for pods, from GET /ip on its read-only TCP API; undefined if it does not answer. */
async function heldBy(node: LabNode): Promise<Held[] | undefined> {
  const answer = await httpGetInNetns(`/var/run/netns/${node.netns}`, 6784, "/ip", 2000);
  if ("error" in answer || answer.status !== 200) return undefined;
  type Owned = { containerid: string; addrs: string[]; pod?: string };
  const owned = (JSON.parse(answer.body) as { owned: Owned[] }).owned;
  return owned.map((o) => ({
    node: node.name,
    containerId: o.containerid,
    address: o.addrs[0]!.split("/")[0]!,
    pod: o.pod ?? "",
  }));
}

/** Host veths of a node, once the retired ones are gone (at most 5 s); undefined if they stay. */
async function hostVeths(node: LabNode): Promise<string[] | undefined> {
  for (let i = 0; i < 100; i++) {
    const lines = inNs(node.netns, ["ip", "-o", "link", "show"]).stdout.split("\n");
    if (!lines.some((l) => PENDING_GROUP_RE.test(l)))
      return lines.map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? "").filter((n) => n.startsWith("vethwepl"));
    await Bun.sleep(50);
  }
  return undefined;
}

/**
 * `nft list table inet weave-npc` as sorted lines, each prefixed by its table and chain or
 * map, with counters' values dropped and a map's elements one per line: two listings of the
 * same rules compare equal whatever order the kernel lists elements in.
 */
function npcTable(node: LabNode): string[] {
  const text = inNs(node.netns, ["nft", "list", "table", "inet", "weave-npc"]).stdout;
  const out: string[] = [];
  const blocks: string[] = [];
  let elements: string | undefined;
  const flushElements = (all: string) => {
    const inner = all.replace(/^elements = \{/, "").replace(/\}$/, "");
    for (const e of inner.split(",")) if (e.trim()) out.push(`${blocks.join(" / ")}: element ${e.trim()}`);
  };
  for (const raw of text.split("\n")) {
    const line = raw.trim().replace(/counter packets \d+ bytes \d+/g, "counter");
    if (!line) continue;
    if (elements !== undefined || line.startsWith("elements = {")) {
      elements = elements === undefined ? line : `${elements} ${line}`;
      if (line.endsWith("}")) {
        flushElements(elements);
        elements = undefined;
      }
    } else if (line.endsWith("{")) {
      blocks.push(line.slice(0, -1).trim());
      out.push(blocks.join(" / "));
    } else if (line === "}") blocks.pop();
    else out.push(`${blocks.join(" / ")}: ${line}`);
  }
  return out.sort();
}

/** Lines of `a` not in `b`, counting repeats. */
function minus(a: string[], b: string[]): string[] {
  const left = new Map<string, number>();
  for (const x of b) left.set(x, (left.get(x) ?? 0) + 1);
  return a.filter((x) => {
    const n = left.get(x) ?? 0;
    if (n) left.set(x, n - 1);
    return !n;
  });
}

/** When the process started (clock ticks since boot: /proc/<pid>/stat field 22), or undefined if it is gone. */
function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function rssAnonKb(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^RssAnon:\s+(\d+) kB/m.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb);
  } catch {
    return undefined;
  }
}

/** Our child processes (by the parent pid in /proc/<pid>/stat): pid, state and command line. */
function childrenOfUs(): { pid: number; state: string; cmd: string }[] {
  const out: { pid: number; state: string; cmd: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) !== process.pid) continue;
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim();
      out.push({ pid: Number(entry), state: fields[0]!, cmd });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** What the soak knows of a burst pod, for the evidence of a leak. */
function podStory(run: Soak, podName: string): string {
  const name = podName.replace(/^default\//, "");
  const b = run.burstPods.get(name);
  if (!b) return "";
  const added = b.addedAt === undefined ? "" : `added at ${r1(b.addedAt)} s on ${run.short(b.node)}`;
  const down = b.agentDownAtDelete ? ` while the agent of ${run.short(b.node)} was down` : "";
  const kill = run.kills.find(
    (k) =>
      k.node === b.node &&
      b.deletedAt !== undefined &&
      k.killedAt <= b.deletedAt + 1 &&
      (k.startedAt ?? 1e9) >= b.deletedAt - 1,
  );
  const killText = kill ? ` (SIGKILL at ${r1(kill.killedAt)} s, started again at ${r1(kill.startedAt ?? NaN)} s)` : "";
  const deleted = b.deletedAt === undefined ? "" : `; deleted at ${r1(b.deletedAt)} s${down}${killText}`;
  const cniDel = readCniDelLines(run, name);
  return `${added}${deleted}${cniDel ? `\ncontrol plane: ${cniDel}` : ""}`;
}

function readCniDelLines(run: Soak, podName: string): string {
  const file = join(labDir(run.lab), "control-plane.log");
  if (!existsSync(file)) return "";
  const lines = readFileSync(file, "utf8").split("\n");
  return lines.filter((l) => l.includes(`pod default/${podName}: CNI DEL`)).join("\n");
}

// ---------------------------------------------------------------------------------------
// The continuous checks, every 3 s: processes, memory, addresses.

function checkProcesses(run: Soak, s: LabState): void {
  run.checks.crash++;
  const cp = s.controlPlane?.pid ?? 0;
  const cpLog = join(labDir(run.lab), "control-plane.log");
  if (!pidAlive(cp)) run.violate("crash", `the control plane (pid ${cp}) is not running`, tail(cpLog), `cp:${cp}`);
  for (const n of s.nodes) {
    const agentGone = !run.killing.has(n.name) && !pidAlive(n.agentPid);
    const agentLog = tail(join(n.dataDir, "agent.log"));
    if (agentGone)
      run.violate("crash", `the agent of ${n.name} (pid ${n.agentPid}) exited`, agentLog, `agent:${n.agentPid}`);
    if (!pidAlive(n.npcPid ?? 0))
      run.violate("crash", `weave npc of ${n.name} (pid ${n.npcPid}) exited`, tail(npcLog(n)), `npc:${n.npcPid}`);
  }
}

function sampleMemory(run: Soak, s: LabState): void {
  const t = run.at();
  for (const n of s.nodes) {
    const kb = rssAnonKb(n.agentPid);
    if (kb === undefined) continue;
    const m = run.memory.get(n.agentPid) ?? { node: n.name, samples: [] };
    m.samples.push([t, kb]);
    run.memory.set(n.agentPid, m);
  }
}

/** A running process as "<pid> <start>", or undefined once it is gone (or a zombie). */
function processKey(pid: number): string | undefined {
  const since = pid > 0 && pidAlive(pid) ? procStart(pid) : undefined;
  return since === undefined ? undefined : `${pid} ${since}`;
}

/** A node's running wireguard-go (its pid file's): its pid and processKey, or undefined. */
function wireguardGoOf(n: LabNode): { key: string; pid: number } | undefined {
  const { pid } = runningWireguardGo({ socketDir: wgSocketDir(n) });
  const key = processKey(pid);
  return key ? { key, pid } : undefined;
}

function sampleWireguardGo(run: Soak, s: LabState): void {
  for (const n of s.nodes) {
    const wg = wireguardGoOf(n);
    if (wg) run.wireguardGos.set(wg.key, { node: n.name, pid: wg.pid });
  }
}

/** The wireguard-go processes seen during the run that still run: key, node and pid. */
function wireguardGosRunning(run: Soak): { key: string; node: string; pid: number }[] {
  return [...run.wireguardGos].filter(([key, wg]) => processKey(wg.pid) === key).map(([key, wg]) => ({ key, ...wg }));
}

/** Check the addresses every running agent holds against each other and against lab.json. */
async function checkAddresses(run: Soak, before: LabState): Promise<void> {
  const up = before.nodes.filter((n) => !run.killing.has(n.name) && pidAlive(n.agentPid));
  const answers = await Promise.all(up.map(async (n) => ({ node: n.name, held: await heldBy(n) })));
  const s = run.state(); // read after the answers: a pod being added is in lab.json before its ADD
  run.checks.addresses++;
  const held = answers.flatMap((a) => a.held ?? []);
  const answered = new Set(answers.filter((a) => a.held).map((a) => a.node));

  const byAddress = new Map<string, Held[]>();
  for (const h of held) byAddress.set(h.address, [...(byAddress.get(h.address) ?? []), h]);
  for (const [address, holders] of byAddress) {
    const ids = [...new Set(holders.map((h) => h.containerId))].sort();
    if (ids.length < 2) continue;
    const who = holders.map((h) => `${h.node} holds ${address} for ${h.containerId} (${h.pod || "no pod"})`);
    run.violate(
      "addresses",
      `${address} is held under ${ids.length} container ids`,
      who.join("\n"),
      `dup:${address}:${ids}`,
    );
  }
  const podsByIp = new Map<string, LabPod[]>();
  for (const p of s.pods.filter((x) => x.ip)) podsByIp.set(p.ip, [...(podsByIp.get(p.ip) ?? []), p]);
  for (const [ip, pods] of podsByIp)
    if (pods.length > 1) {
      const names = pods.map((p) => `${p.namespace}/${p.name} on ${p.node}`).sort();
      run.violate("addresses", `lab.json gives ${ip} to ${pods.length} pods`, names.join("\n"), `pods:${ip}:${names}`);
    }

  // Allocations without a pod and pods without their allocation: only when seen twice in a row.
  const suspects = new Set<string>();
  const podIds = new Set(s.pods.map((p) => p.containerId));
  for (const h of held.filter((x) => !podIds.has(x.containerId))) {
    const key = `orphan:${h.containerId}`;
    suspects.add(key);
    if (run.suspects.has(key)) orphanFound(run, h);
  }
  for (const p of s.pods.filter((x) => x.ip && answered.has(x.node))) {
    const mine = held.find((h) => h.node === p.node && h.containerId === p.containerId);
    if (mine?.address === p.ip) continue;
    const key = `lost:${p.containerId}`;
    suspects.add(key);
    if (run.suspects.has(key)) lostFound(run, p, mine);
  }
  run.suspects = suspects;
}

function orphanFound(run: Soak, h: Held): void {
  const story = podStory(run, h.pod);
  const held = `${h.node} holds ${h.address} for ${h.containerId} (${h.pod || "no pod"})`;
  const evidence = `${held}; lab.json has no pod with that container id${story ? `\n${story}` : ""}`;
  run.violate("no-leak", `an allocation without a pod: ${h.address} on ${h.node}`, evidence, `orphan:${h.containerId}`);
}

function lostFound(run: Soak, p: LabPod, mine: Held | undefined): void {
  const holds = mine ? `holds ${mine.address} for it` : "holds nothing for it";
  const evidence = `pod ${p.namespace}/${p.name} (${p.containerId}) runs with ${p.ip}; the agent of ${p.node} ${holds}`;
  run.violate(
    "addresses",
    `the agent of ${p.node} does not hold ${p.ip} for ${p.name}`,
    evidence,
    `lost:${p.containerId}`,
  );
}

function startChecker(run: Soak): { stop(): Promise<void> } {
  let stopping = false;
  const loop = (async () => {
    while (!stopping && !interrupted()) {
      const tickAt = performance.now();
      const s = readLab(run.lab);
      if (!s) return;
      checkProcesses(run, s);
      sampleMemory(run, s);
      sampleWireguardGo(run, s);
      try {
        await checkAddresses(run, s);
      } catch (e) {
        run.say(`address check could not run: ${(e as Error).message}`);
      }
      while (!stopping && !interrupted() && performance.now() - tickAt < CHECK_EVERY_MS) await Bun.sleep(100);
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Reachability after a heal.

/**
 * Ping rounds until one has every pair answering (and the victim reachable from every base
 * pod, unless the policy is applied); a violation if that is later than 15 s after `healAt`.
 */
async function awaitRecovery(run: Soak, round: number, after: string, healAt: number): Promise<void> {
  let late = false;
  for (;;) {
    await checkpoint();
    const withVictim = !run.policyApplied;
    const pairs = await pingRound(matrixPlan(run, withVictim));
    const bad = pairs.filter((p) => !p.ok);
    const t = run.at();
    const victimOk = !pairs.some((p) => p.to === run.victim && !p.ok);
    if (withVictim && victimOk && run.policyHealAt !== undefined) {
      run.policyReopenS.push(t - run.policyHealAt);
      run.policyHealAt = undefined;
    }
    if (!bad.length) {
      run.checks.reachable++;
      run.recoveries.push({ round, after, seconds: t - healAt });
      run.say(`all ${pairs.length} pairs answer, ${(t - healAt).toFixed(1)} s after ${after}`);
      return;
    }
    const evidence = () =>
      `${bad.length} of ${pairs.length} pairs failed:\n${listed(bad.map(pairText))}\n${meshText(run)}`;
    if (!late && t - healAt > RECOVERY_LIMIT_S) {
      late = true;
      run.violate(
        "reachable",
        `not every pod reachable ${RECOVERY_LIMIT_S} s after ${after} (round ${round})`,
        evidence(),
      );
    }
    if (t - healAt > RECOVERY_WAIT_S) {
      run.checks.reachable++;
      run.recoveries.push({ round, after, seconds: null });
      run.violate(
        "reachable",
        `still not every pod reachable ${RECOVERY_WAIT_S} s after ${after} (round ${round})`,
        evidence(),
      );
      return;
    }
  }
}

function meshText(run: Soak): string {
  const views = meshViews(run.tools, run.state());
  return `mesh: ${views.map((v) => `${run.short(v.node)} reaches ${v.reachable}, ${v.established} established`).join("; ")}`;
}

/** Before the next round: still every pair, one round (a pair that fails is tried once more). */
async function stillReachable(run: Soak, round: number): Promise<void> {
  const pairs = await pingRound(matrixPlan(run, !run.policyApplied));
  const failed = pairs.filter((p) => !p.ok);
  run.checks.reachable++;
  if (!failed.length) return;
  const again = await pingRound(
    failed.map((p) => ({ source: findProbe(run, p.from)!, targets: [findProbe(run, p.to)!] })),
  );
  const bad = again.filter((p) => !p.ok);
  if (bad.length)
    run.violate(
      "reachable",
      `pods no longer reachable in the quiet spell after round ${round}`,
      `${listed(bad.map(pairText))}\n${meshText(run)}`,
    );
}

function findProbe(run: Soak, name: string): Probe | undefined {
  const p = run.state().pods.find((x) => x.name === name);
  return p && probe(p);
}

// ---------------------------------------------------------------------------------------
// The faults. Each returns the moment it was healed (seconds from the start).

type FaultPlan =
  | { kind: "kill"; node: string; holdS: number }
  | { kind: "cut"; node: string; holdS: number }
  | { kind: "burst"; del: string[]; add: { name: string; node: string }[] }
  | { kind: "policy"; holdS: number }
  | { kind: "rotate" };
type Kind = FaultPlan["kind"];
/** The kinds drawn for a round (the rotation's round is drawn once, at the start). */
const KIND_WEIGHTS: [Exclude<Kind, "rotate">, number][] = [
  ["kill", 3],
  ["cut", 3],
  ["burst", 2.5],
  ["policy", 1.5],
];

function faultText(run: Soak, f: FaultPlan): string {
  if (f.kind === "kill") return `kill -9 the agent of ${run.short(f.node)} (${f.holdS} s)`;
  if (f.kind === "cut") return `cut ${run.short(f.node)} (${f.holdS} s)`;
  if (f.kind === "policy") return `isolate the victim (${f.holdS} s)`;
  if (f.kind === "rotate") return "rotate the password (every agent restarted twice, in turn)";
  const adds = f.add.map((p) => `${p.name.slice(run.lab.length + 1)}@${run.short(p.node)}`);
  return `burst: delete ${f.del.length}, add ${adds.join(" ")}`;
}

async function killFault(run: Soak, f: { node: string; holdS: number }): Promise<number> {
  const pid = run.node(f.node).agentPid;
  const kill: Kill = { node: f.node, pid, since: procStart(pid), killedAt: run.at() };
  run.killing.add(f.node);
  try {
    run.kills.push(kill);
    process.kill(pid, "SIGKILL");
    if (!(await waitUntil(() => !pidAlive(pid), 5000)))
      run.violate(
        "fault",
        `the agent of ${f.node} (pid ${pid}) still runs 5 s after SIGKILL`,
        `/proc/${pid}/stat exists`,
      );
    await sleepS(f.holdS);
    const healAt = run.at();
    kill.startedAt = healAt;
    await startAgentAgain(run, f.node);
    return healAt;
  } finally {
    run.killing.delete(f.node);
  }
}

/** labAgent start; once more if the new agent exited (a violation either way). */
async function startAgentAgain(run: Soak, node: string): Promise<void> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      const n = await labAgent(run.lab, "start", node, run.tools);
      run.started.push(n.agentPid);
      return;
    } catch (e) {
      const n = run.node(node);
      run.started.push(n.agentPid);
      const evidence = `${(e as Error).message}\n${tail(join(n.dataDir, "agent.log"))}`;
      run.violate("fault", `the agent of ${node} did not become ready after its start (attempt ${attempt})`, evidence);
      if (pidAlive(n.agentPid)) return;
    }
  }
}

async function cutFault(run: Soak, f: { node: string; holdS: number }): Promise<number> {
  try {
    labCut(run.lab, f.node, true);
  } catch (e) {
    run.violate("fault", `cut of ${f.node} failed`, (e as Error).message);
  }
  await sleepS(f.holdS);
  const healAt = run.at();
  try {
    labCut(run.lab, f.node, false);
  } catch (e) {
    run.violate("fault", `heal of ${f.node} failed`, (e as Error).message);
  }
  return healAt;
}

/** A burst's pod, or the warm-up churn's: what each counts in `faults`. */
type PodKind = "burst" | "churn";

async function deletePod(run: Soak, name: string, kind: PodKind): Promise<void> {
  const b = run.burstPods.get(name)!;
  const node = run.state().nodes.find((n) => n.name === b.node);
  b.deletedAt = run.at();
  b.agentDownAtDelete = run.killing.has(b.node) || !pidAlive(node?.agentPid ?? 0);
  try {
    await labPodDel(run.lab, name);
    run.faults[kind === "burst" ? "podsDeleted" : "churnDeleted"]++;
  } catch (e) {
    run.violate("fault", `pod ${name} could not be deleted`, (e as Error).message);
  }
}

/** True when the pod runs. */
async function addPod(run: Soak, p: { name: string; node: string }, kind: PodKind): Promise<boolean> {
  const b: BurstPod = { name: p.name, node: p.node };
  run.burstPods.set(p.name, b);
  try {
    await labPodAdd(run.lab, { name: p.name, node: p.node });
    b.addedAt = run.at();
    run.faults[kind === "burst" ? "podsAdded" : "churnAdded"]++;
    return true;
  } catch (e) {
    run.violate("fault", `pod ${p.name} could not be added on ${p.node}`, (e as Error).message);
    return false;
  }
}

async function burstFault(run: Soak, f: { del: string[]; add: { name: string; node: string }[] }): Promise<number> {
  const deletes = f.del.map((name) => deletePod(run, name, "burst"));
  const adds = f.add.map(async (p) => {
    if (await addPod(run, p, "burst")) run.outstanding.push(p.name);
  });
  await Promise.all([...deletes, ...adds]);
  return run.at();
}

/**
 * The warm-up churn, beside the schedule: from the rotation (the agents whose memory is
 * judged start there) until CHURN_STOP_BEFORE_S before warm-up ends, CHURN_AT_ONCE pods
 * at a time added on the next nodes in turn whose agents are up, and the previous ones
 * deleted, `perS` pods a second. They are <lab>-w<i>, left out of the pings; the address
 * and leak checks cover them. An agent's RssAnon climbs with the work it has done (pods
 * added and deleted, on its node and in the gossip) until it levels off (docs/benchmarks.md,
 * "Soak"); at the schedule's own pace that takes hours, so the churn does the work first.
 */
function startChurn(run: Soak, perS: number, warmEndAt: () => number): { stop(): Promise<void> } {
  let stopping = false;
  const loop = async () => {
    while (!stopping && run.measuredSince === 0) await sleepS(0.2);
    const until = warmEndAt() - CHURN_STOP_BEFORE_S;
    if (stopping || run.at() >= until) return;
    run.say(`warm-up churn: ${perS} pods a second until ${r1(until)} s`);
    const stepS = CHURN_AT_ONCE / perS;
    let live: string[] = [];
    let turn = 0;
    while (!stopping && run.at() < until) {
      const stepAt = run.at();
      const up = run
        .state()
        .nodes.map((n) => n.name)
        .filter((n) => !run.killing.has(n));
      const add = up.length
        ? Array.from({ length: CHURN_AT_ONCE }, () => ({
            name: `${run.lab}-w${++run.churnSeq}`,
            node: up[turn++ % up.length]!,
          }))
        : [];
      const gone = live;
      live = [];
      const adds = add.map(async (p) => {
        if (await addPod(run, p, "churn")) live.push(p.name);
      });
      await Promise.all([...gone.map((name) => deletePod(run, name, "churn")), ...adds]);
      await sleepS(Math.max(0, stepS - (run.at() - stepAt)));
    }
    await Promise.all(live.map((name) => deletePod(run, name, "churn")));
    run.say(`warm-up churn over: ${run.faults.churnAdded} pods added, ${run.faults.churnDeleted} deleted`);
  };
  // an interruption throws here too; the schedule's own loop reports it
  const done =
    perS > 0 ? loop().catch((e) => run.say(`warm-up churn stopped: ${(e as Error).message}`)) : Promise.resolve();
  return {
    async stop() {
      stopping = true;
      await done;
    },
  };
}

/**
 * Ping rounds until one in which no base pod reaches the victim; the seconds from `since`
 * to that round's start (its pings were all dropped, so the rule was in place when they were
 * sent), or undefined once `limitS` passed, with the pairs that still answered.
 */
async function untilIsolated(run: Soak, since: number, limitS: number): Promise<{ s?: number; open: Pair[] }> {
  for (;;) {
    const roundAt = run.at();
    const open = (await victimPairs(run)).filter((p) => p.ok);
    if (!open.length) return { s: roundAt - since, open };
    if (run.at() - since > limitS) return { open };
    await checkpoint();
  }
}

async function policyFault(run: Soak, f: { holdS: number }): Promise<number> {
  const api = labApi(run.state());
  const policy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: POLICY_NAME, namespace: "default" },
    spec: { podSelector: { matchLabels: { soak: "victim" } }, policyTypes: ["Ingress"] },
  };
  try {
    await api.create(POLICIES, policy);
  } catch (e) {
    run.violate("fault", "the policy could not be created", (e as Error).message);
    return run.at();
  }
  run.policyApplied = true;
  run.policyHealAt = undefined;
  const appliedAt = run.at();
  const enforced = await untilIsolated(run, appliedAt, POLICY_ENFORCE_S);
  run.checks.policy++;
  if (enforced.s === undefined)
    run.violate(
      "policy",
      `the victim still answers ${POLICY_ENFORCE_S} s after the policy was created`,
      listed(enforced.open.map((p) => `${p.from} -> ${p.to} (${p.ip}) answers`)),
    );
  else run.policyEnforceS.push(enforced.s);
  await sleepS(f.holdS);
  const open = (await victimPairs(run)).filter((p) => p.ok);
  run.checks.policy++;
  if (open.length)
    run.violate(
      "policy",
      "the victim answers while the policy is applied",
      listed(open.map((p) => `${p.from} -> ${p.to} (${p.ip}) answers`)),
    );
  const healAt = run.at();
  try {
    await api.delete(`${POLICIES}/${POLICY_NAME}`);
  } catch (e) {
    run.violate("fault", "the policy could not be deleted", (e as Error).message);
  }
  run.policyApplied = false;
  run.policyHealAt = healAt;
  return healAt;
}

/**
 * The lab's password to a new one, every agent restarted (twice) by labPasswordRotate; the
 * agents it started are the ones whose memory is judged from then on.
 */
async function rotateFault(run: Soak): Promise<number> {
  const nodes = run.state().nodes.map((n) => n.name);
  // restarts, not crashes: the checks leave the agents alone meanwhile
  for (const n of nodes) run.killing.add(n);
  try {
    const restarted = await labPasswordRotate(run.lab, run.tools, Buffer.from(randomBytes(24).toString("base64")));
    run.started.push(...restarted.map((n) => n.agentPid));
  } catch (e) {
    run.violate("fault", "the password rotation did not complete", (e as Error).message);
  } finally {
    for (const n of nodes) run.killing.delete(n);
  }
  run.measured = new Map(run.state().nodes.map((n) => [n.agentPid, n.name]));
  run.measuredSince = run.at();
  return run.at();
}

function injectFault(run: Soak, f: FaultPlan): Promise<number> {
  run.faults[f.kind]++;
  run.checks.fault++;
  if (f.kind === "kill") return killFault(run, f);
  if (f.kind === "cut") return cutFault(run, f);
  if (f.kind === "burst") return burstFault(run, f);
  if (f.kind === "rotate") return rotateFault(run);
  return policyFault(run, f);
}

// ---------------------------------------------------------------------------------------
// The schedule.

function pickKind<K extends Kind>(rng: Rng, weights: [K, number][]): K {
  const total = weights.reduce((a, [, w]) => a + w, 0);
  let x = (rng.int(0, 999) / 1000) * total;
  for (const [kind, w] of weights) {
    if (x < w) return kind;
    x -= w;
  }
  return weights[weights.length - 1]![0];
}

function planFault(run: Soak, kind: Exclude<Kind, "rotate">): FaultPlan {
  const { rng } = run;
  const nodes = run.state().nodes.map((n) => n.name);
  if (kind === "kill")
    return { kind, node: rng.pick(nodes.filter((n) => n !== run.protectedNode)), holdS: rng.int(2, 5) };
  if (kind === "cut") return { kind, node: rng.pick(nodes), holdS: rng.int(2, 6) };
  if (kind === "policy") return { kind, holdS: rng.int(2, 4) };
  const del = run.outstanding.splice(0);
  const add = Array.from({ length: rng.int(3, 6) }, () => ({
    name: `${run.lab}-b${++run.podSeq}`,
    node: rng.pick(nodes),
  }));
  return { kind, del, add };
}

/** One fault, or two of different kinds; every draw from the seeded PRNG, in a fixed order. */
function planRound(run: Soak, round: number): { fault: FaultPlan; delayMs: number }[] {
  if (round === run.rotationRound) return [{ fault: { kind: "rotate" }, delayMs: 0 }];
  const first = pickKind(run.rng, KIND_WEIGHTS);
  const two = run.rng.chance(TWO_FAULTS_P);
  const others = KIND_WEIGHTS.filter(([k]) => k !== first);
  const kinds = two ? [first, pickKind(run.rng, others)] : [first];
  return kinds.map((kind, i) => ({ fault: planFault(run, kind), delayMs: i ? run.rng.int(0, 2000) : 0 }));
}

/** An agent or npc that exited unasked (a crash, already recorded) is started again, so the run goes on. */
async function reviveCrashed(run: Soak): Promise<void> {
  checkProcesses(run, run.state()); // records what the last check may not have seen yet
  for (const n of run.state().nodes) {
    if (!pidAlive(n.agentPid)) {
      run.say(`starting the agent of ${run.short(n.name)} again after its crash`);
      await startAgentAgain(run, n.name);
    }
    if (!pidAlive(n.npcPid ?? 0)) {
      run.say(`starting weave npc of ${run.short(n.name)} again after its crash`);
      await labNpc(run.lab, "start", n.name, run.tools).catch((e) => run.say(`it did not start: ${e.message}`));
    }
  }
}

async function runRound(run: Soak, round: number): Promise<void> {
  await reviveCrashed(run);
  const plan = planRound(run, round);
  run.faults.rounds++;
  if (plan.length > 1) run.faults.twoAtOnce++;
  run.say(`round ${round}: ${plan.map((p) => faultText(run, p.fault)).join(" + ")}`);
  const results = await Promise.allSettled(
    plan.map(async (p) => {
      await sleepS(p.delayMs / 1000);
      return injectFault(run, p.fault);
    }),
  );
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const healAt = Math.max(...results.map((r) => (r as PromiseFulfilledResult<number>).value));
  const kinds = plan.map((p) => p.fault.kind).join("+");
  await awaitRecovery(run, round, `the heal of round ${round} (${kinds})`, healAt);
  await sleepS(run.rng.int(3, 8));
  await stillReachable(run, round);
}

// ---------------------------------------------------------------------------------------
// The end: leaks, memory.

async function checkLeaks(run: Soak, baseline: Map<string, string[]>): Promise<void> {
  const s = run.state();
  run.checks["no-leak"]++;
  for (const n of s.nodes)
    await checkVeths(
      run,
      n,
      s.pods.filter((p) => p.node === n.name),
    );
  await checkAllocationsAtEnd(run, s);
  for (const n of s.nodes) await checkNpcTable(run, n, baseline.get(n.name) ?? []);
  checkProcessesAtEnd(run, s);
  checkWireguardGo(run, s);
  checkNamespaces(run, s);
}

/** Each node's wireguard-go runs, and no other one seen during the run does. */
function checkWireguardGo(run: Soak, s: LabState): void {
  sampleWireguardGo(run, s);
  const current = new Map(s.nodes.map((n) => [n.name, wireguardGoOf(n)?.key]));
  for (const n of s.nodes)
    if (!current.get(n.name)) {
      const { pidPath } = runningWireguardGo({ socketDir: wgSocketDir(n) });
      run.violate("no-leak", `${n.name} has no wireguard-go running`, pidPath);
    }
  const others = wireguardGosRunning(run)
    .filter((wg) => current.get(wg.node) !== wg.key)
    .map((wg) => `${wg.node}: pid ${wg.pid}`);
  if (others.length)
    run.violate("no-leak", "wireguard-go processes besides each node's current one", others.join("\n"));
}

/** The node's host veths are exactly its pods'. */
async function checkVeths(run: Soak, n: LabNode, pods: LabPod[]): Promise<void> {
  const wanted = pods.map((p) => hostVethName(p.containerId, "eth0"));
  const veths = await hostVeths(n);
  if (!veths) {
    const retired = inNs(n.netns, ["ip", "-o", "link", "show", "group", "30565"]).stdout.trim();
    run.violate("no-leak", `retired host veths on ${n.name} not deleted within 5 s`, retired);
    return;
  }
  const extra = minus(veths, wanted);
  const missing = minus(wanted, veths);
  const podVeths = pods.map((p) => `${p.name} ${hostVethName(p.containerId, "eth0")}`).join(", ");
  if (extra.length)
    run.violate(
      "no-leak",
      `${extra.length} host veth(s) on ${n.name} of no pod`,
      `${extra.join(" ")}
pods: ${podVeths}`,
    );
  if (missing.length) run.violate("no-leak", `pods on ${n.name} without their host veth`, missing.join(" "));
}

/** Every allocation is a pod's, and every pod's address is held for it. */
async function checkAllocationsAtEnd(run: Soak, s: LabState): Promise<void> {
  const answers = await Promise.all(s.nodes.map(async (n) => ({ n, held: await heldBy(n) })));
  const podIds = new Set(s.pods.map((p) => p.containerId));
  for (const { n, held } of answers) {
    if (!held) {
      run.violate("no-leak", `the agent of ${n.name} does not answer GET /ip`, tail(join(n.dataDir, "agent.log")));
      continue;
    }
    for (const h of held.filter((x) => !podIds.has(x.containerId))) orphanFound(run, h);
    for (const p of s.pods.filter((x) => x.node === n.name && x.ip))
      if (!held.some((h) => h.containerId === p.containerId && h.address === p.ip)) lostFound(run, p, undefined);
  }
}

/** weave npc follows the API by a watch and resyncs every 10 s: its table may take 15 s to agree. */
async function checkNpcTable(run: Soak, n: LabNode, before: string[]): Promise<void> {
  let now = npcTable(n);
  const differs = () => minus(now, before).length > 0 || minus(before, now).length > 0;
  for (let i = 0; i < 150 && differs(); i++) {
    await Bun.sleep(100);
    now = npcTable(n);
  }
  const extra = minus(now, before);
  const lost = minus(before, now);
  const table = `${n.name}'s weave-npc table`;
  if (extra.length) run.violate("no-leak", `${extra.length} line(s) in ${table} not there before`, listed(extra, 20));
  if (lost.length) run.violate("no-leak", `${lost.length} line(s) of ${table} from before are gone`, listed(lost, 20));
}

/** No namespace named like the lab's that lab.json does not list. */
function checkNamespaces(run: Soak, s: LabState): void {
  const outside = s.outside ? [s.outside.netns] : [];
  const listedNs = [s.underlay, ...outside, ...s.nodes.map((n) => n.netns), ...s.pods.map((p) => basename(p.netns))];
  const mine = new Set(listedNs);
  const strays = listNamedNetns().filter((ns) => ns.startsWith(`${run.lab}-`) && !mine.has(ns));
  if (strays.length)
    run.violate("no-leak", `${strays.length} namespace(s) of the lab not in lab.json`, strays.join(" "));
}

function checkProcessesAtEnd(run: Soak, s: LabState): void {
  for (const n of s.nodes) {
    const agentLog = tail(join(n.dataDir, "agent.log"));
    if (!pidAlive(n.agentPid))
      run.violate("no-leak", `the agent of ${n.name} is not running`, agentLog, `agent:${n.agentPid}`);
    if (!pidAlive(n.npcPid ?? 0))
      run.violate("no-leak", `weave npc of ${n.name} is not running`, tail(npcLog(n)), `npc:${n.npcPid}`);
  }
  // pids are reused (pid_max wraps within a soak): the same pid started later is another process
  const stillUp = run.kills
    .filter((k) => pidAlive(k.pid) && procStart(k.pid) === k.since)
    .map((k) => `${k.node} pid ${k.pid}`);
  if (stillUp.length) run.violate("no-leak", "agents the soak killed still run", stillUp.join("\n"));
  const expected = new Set([s.controlPlane?.pid ?? 0, ...s.nodes.flatMap((n) => [n.agentPid, n.npcPid ?? 0])]);
  const others = childrenOfUs()
    .filter((c) => !expected.has(c.pid))
    .map((c) => `pid ${c.pid} (${c.state}): ${c.cmd}`);
  if (others.length) run.violate("no-leak", `${others.length} other child process(es) of the soak`, others.join("\n"));
}

type MemoryRow = {
  node: string;
  pid: number;
  protected: boolean;
  warmKb: number;
  endKb: number;
  growthPct: number;
  /** False when the run ends less than a window after warm-up: then nothing is judged. */
  judged: boolean;
  ok: boolean;
  /** The median of each 30 s of the schedule, [end of the 30 s, kB]: the shape of the curve. */
  traceKb: [number, number][];
};

const TRACE_STEP_S = 30;

/**
 * Each measured agent's growth from the end of warm-up to the end (those the rotation
 * started, never killed after). Judged only when a whole window lies between the two (else
 * the rows are reported with judged: false).
 */
function checkMemory(run: Soak, warmEndS: number, endS: number): MemoryRow[] {
  const rows: MemoryRow[] = [];
  const judged = endS - warmEndS >= MEMORY_WINDOW_S;
  const window = (samples: [number, number][], until: number) =>
    samples.filter(([t]) => t > until - MEMORY_WINDOW_S && t <= until).map(([, kb]) => kb);
  const over = (until: number) => `${r1(Math.max(0, until - MEMORY_WINDOW_S))}-${r1(until)} s`;
  for (const n of run.state().nodes) {
    // killed and started again since (by node too: a new agent may be given an old agent's pid)
    const killedSince = run.kills.some((k) => k.node === n.name && k.killedAt >= run.measuredSince);
    if (run.measured.get(n.agentPid) !== n.name || killedSince) continue;
    const samples = run.memory.get(n.agentPid)?.samples ?? [];
    const warm = window(samples, warmEndS);
    const end = window(samples, endS);
    if (judged) run.checks.memory++;
    if (!warm.length || !end.length) {
      if (judged) run.violate("memory", `too few memory samples of the agent of ${n.name}`, `${samples.length}`);
      continue;
    }
    const warmKb = median(warm);
    const endKb = median(end);
    const growth = endKb / warmKb - 1;
    const traceKb: [number, number][] = [];
    for (let until = TRACE_STEP_S; until <= endS + TRACE_STEP_S - 1; until += TRACE_STEP_S) {
      const step = samples.filter(([t]) => t > until - TRACE_STEP_S && t <= until).map(([, kb]) => kb);
      if (step.length) traceKb.push([Math.min(until, r1(endS)), median(step)]);
    }
    const ok = !judged || growth <= MEMORY_GROWTH_MAX;
    const isProtected = n.name === run.protectedNode;
    const growthPct = r1(growth * 100);
    rows.push({ node: n.name, pid: n.agentPid, protected: isProtected, warmKb, endKb, growthPct, judged, ok, traceKb });
    const evidence = `RssAnon median ${warmKb} kB over ${over(warmEndS)}, ${endKb} kB over ${over(endS)}`;
    if (!ok) run.violate("memory", `the agent of ${n.name} grew ${growthPct} % after warm-up`, evidence);
  }
  return rows;
}

function copyLogs(run: Soak, dir: string): void {
  const s = readLab(run.lab);
  if (!s) return;
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [[join(labDir(run.lab), "control-plane.log"), "control-plane.log"]];
  for (const n of s.nodes)
    files.push([join(n.dataDir, "agent.log"), `${n.name}-agent.log`], [npcLog(n), `${n.name}-npc.log`]);
  for (const [from, to] of files) if (existsSync(from)) copyFileSync(from, join(dir, to));
}

// ---------------------------------------------------------------------------------------
// Report.

const seconds = (xs: number[]) =>
  xs.length ? { medianS: r1(median(xs)), maxS: r1(Math.max(...xs)) } : { medianS: null, maxS: null };

type Summary = { durationS: number; memory: MemoryRow[]; agentsRunning: number };

function result(run: Soak, o: Opts, build: string, summary: Summary) {
  const recovered = run.recoveries.map((r) => r.seconds).filter((x): x is number => x !== null);
  const invariants = Object.fromEntries(
    INVARIANTS.map((i) => {
      const violations = run.violations.filter((v) => v.invariant === i.key).length;
      const judged = i.key === "memory" ? { judged: summary.memory.some((m) => m.judged) } : {};
      return [i.json, { ok: violations === 0, checks: run.checks[i.key], violations, ...judged }];
    }),
  );
  return {
    bench: "soak",
    build,
    lab: run.lab,
    seed: o.seed,
    minutes: o.minutes,
    durationS: r1(summary.durationS),
    nodes: NODES,
    protectedNode: run.protectedNode,
    victim: { pod: run.victim, node: run.victimNode },
    faults: run.faults,
    recovery: {
      n: run.recoveries.length,
      ...seconds(recovered),
      unrecovered: run.recoveries.length - recovered.length,
      samplesS: recovered.map(r1),
    },
    policy: { enforce: seconds(run.policyEnforceS), reopen: seconds(run.policyReopenS) },
    memory: summary.memory,
    processes: {
      agentsStarted: run.firstAgents.size + run.started.length,
      agentsKilled: run.kills.length,
      agentsRunning: summary.agentsRunning,
    },
    invariants,
    violations: run.violations,
    ok: run.violations.length === 0,
  };
}

function table(run: Soak, out: ReturnType<typeof result>): string {
  const f = out.faults;
  const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
  const span = (x: { medianS: number | null; maxS: number | null }) =>
    x.medianS === null ? "none" : `median ${x.medianS} s, max ${x.maxS} s`;
  const r = out.recovery;
  const never = r.unrecovered ? `, ${r.unrecovered} never within ${RECOVERY_WAIT_S} s` : "";
  const head = `${NODES} nodes, seed ${out.seed}, ${out.minutes} min of faults, ${(out.durationS / 60).toFixed(1)} min in all`;
  const cast = `protected agent ${run.short(out.protectedNode)}, victim ${out.victim.pod} on ${run.short(out.victim.node)}`;
  const invariantRow = (i: (typeof INVARIANTS)[number]) => {
    const v = out.invariants[i.json] as { checks: number; violations: number; judged?: boolean };
    const note = v.judged === false ? `   not judged: the run ends < ${MEMORY_WINDOW_S} s after warm-up` : "";
    return `${i.title.padEnd(60)}${String(v.checks).padStart(8)}${String(v.violations).padStart(12)}${note}`;
  };
  const memoryRow = (m: MemoryRow) => {
    const name = `${run.short(m.node)}${m.protected ? " (protected)" : ""}`;
    const growth = `${m.growthPct >= 0 ? "+" : ""}${m.growthPct} %`;
    return `${name.padEnd(22)}${mb(m.warmKb).padStart(10)}${mb(m.endKb).padStart(10)}${growth.padStart(9)}`;
  };
  const violationRow = (v: Violation) =>
    `  [${v.t} s] ${v.invariant}: ${v.what}\n      ${v.evidence.split("\n").join("\n      ")}`;
  const lines = [
    "",
    `soak of lab ${out.lab}: ${head}`,
    `${cast}; build ${out.build}`,
    "",
    `${"FAULT".padEnd(28)}INJECTED`,
    `${"agent kill -9 and restart".padEnd(28)}${f.kill}`,
    `${"cut and heal".padEnd(28)}${f.cut}`,
    `${"pod burst".padEnd(28)}${f.burst}   (${f.podsAdded} pods added, ${f.podsDeleted} deleted)`,
    `${"policy on the victim".padEnd(28)}${f.policy}`,
    `${"password rotation".padEnd(28)}${f.rotate}   (in round ${run.rotationRound}: every agent restarted twice)`,
    `${"rounds".padEnd(28)}${f.rounds}   (${f.twoAtOnce} with two faults at once)`,
    `${"warm-up churn".padEnd(28)}${f.churnAdded} pods added, ${f.churnDeleted} deleted (not pinged)`,
    "",
    `${"INVARIANT".padEnd(60)}${"CHECKS".padStart(8)}${"VIOLATIONS".padStart(12)}`,
    ...INVARIANTS.map(invariantRow),
    "",
    `reachability recovered after a heal: ${r.n} times, ${span(r)}${never}`,
    `policy enforced after its creation: ${span(out.policy.enforce)}`,
    `victim reachable again after the policy's deletion: ${span(out.policy.reopen)}`,
    `agents: ${out.processes.agentsStarted} started, ${out.processes.agentsKilled} killed, ${out.processes.agentsRunning} running at the end`,
    "",
    `${"AGENT RssAnon".padEnd(22)}${"WARM-UP".padStart(10)}${"END".padStart(10)}${"GROWTH".padStart(9)}`,
    ...out.memory.map(memoryRow),
    "",
    out.violations.length ? `${out.violations.length} VIOLATION(S):` : "no violation",
    ...out.violations.map(violationRow),
    "",
  ];
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------

async function setUp(o: Opts, lab: string, tools: LabTools, rng: Rng): Promise<Soak> {
  tools.log(
    `bench/soak: lab ${lab}, ${NODES} nodes, seed ${o.seed} (replay: bun bench/soak.ts --minutes ${o.minutes} --seed ${o.seed})`,
  );
  const password = Buffer.from(randomBytes(24).toString("base64"));
  await labUp(lab, NODES, 1, tools, { password });
  await checkpoint();
  const nodes = mustReadLab(lab).nodes.map((n) => n.name);
  const protectedNode = rng.pick(nodes);
  const victimNode = rng.pick(nodes);
  const rotationRound = rng.int(...ROTATION_ROUNDS);
  const victim = `${lab}-v`;
  await labPodAdd(lab, { name: victim, node: victimNode, labels: "soak=victim" });
  const run = new Soak(lab, tools, rng, protectedNode, victim, victimNode, tools.log);
  for (const n of run.state().nodes) run.firstAgents.set(n.agentPid, n.name);
  run.measured = new Map(run.firstAgents);
  run.rotationRound = rotationRound;
  run.say(`lab up; protected agent: ${run.short(protectedNode)}; victim on ${run.short(victimNode)}`);
  return run;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const log = stderrLog(o.json);
  requireRoot(fail);
  requireBuild(fail);

  const lab = o.name ?? labName("so", 6, 2);
  if (readLab(lab))
    fail(`lab "${lab}" is already up; choose another --name or remove it: weave lab down --name ${lab}`);
  const { tmp, weaveBin, pluginBin, build } = snapshotBinaries("soak", lab, fail);
  const tools: LabTools = { weave: [weaveBin], plugin: pluginBin, log };
  const rng = seededRng(o.seed);
  let run: Soak | undefined;
  let checker: { stop(): Promise<void> } | undefined;
  let churn: { stop(): Promise<void> } | undefined;

  const cleanup = async (): Promise<string[]> => {
    const problems: string[] = [];
    await churn?.stop();
    await checker?.stop();
    await endTracked();
    if (o.logs && run) copyLogs(run, o.logs);
    await downLab(lab, tools, problems);
    removeTmp(tmp, problems);
    log(`bench/soak: cleaned up: lab ${lab}, ${tmp}`);
    return problems;
  };

  let summary: Summary;
  try {
    run = await setUp(o, lab, tools, rng);
    // Before the first fault: everything reachable, and the npc tables to compare with at the end.
    await awaitRecovery(run, 0, "the lab came up", run.at());
    if (run.violations.length) throw new BenchError("the lab was not healthy before the first fault");
    run.recoveries.length = 0;
    run.checks.reachable = 0;
    const baseline = new Map(run.state().nodes.map((n) => [n.name, npcTable(n)]));
    if (o.quiet > 0) await waitQuiet(o.quiet, o.quietSeconds, o.quietMax, log);

    const scheduleS = o.minutes * 60;
    const plannedWarmEndS = Math.max(o.warmupS, scheduleS / 4);
    run.start();
    run.say(
      `schedule: ${o.minutes} min; password rotation in round ${run.rotationRound}; warm-up until ${plannedWarmEndS} s`,
    );
    checker = startChecker(run);
    const warmEndAt = () => Math.max(plannedWarmEndS, run!.measuredSince + o.warmupS);
    churn = startChurn(run, o.churn, warmEndAt);
    for (let round = 1; run.at() < scheduleS - 10; round++) await runRound(run, round);
    if (run.at() < scheduleS) await sleepS(scheduleS - run.at());
    const endS = run.at();

    await churn.stop();
    run.say(`schedule over; deleting the last ${run.outstanding.length} burst pod(s)`);
    const last = run.outstanding.splice(0);
    await Promise.all(last.map((name) => deletePod(run!, name, "burst")));
    await awaitRecovery(run, 0, "the last burst pods were deleted", run.at());
    await checker.stop();
    await Bun.sleep(1500); // the agents' deferred delete of retired veths (~1 s)
    await checkLeaks(run, baseline);
    const warmEndS = warmEndAt();
    if (warmEndS > plannedWarmEndS) run.say(`warm-up until ${r1(warmEndS)} s: ${o.warmupS} s after the rotation`);
    const memory = checkMemory(run, warmEndS, endS);
    const agentsRunning = run.state().nodes.filter((n) => pidAlive(n.agentPid)).length;
    summary = { durationS: run.at(), memory, agentsRunning };
  } catch (e) {
    return abort("soak", e, cleanup);
  }

  const problems = await cleanup();
  if (interrupted()) return 130;
  const soak = run!;
  for (const p of problems) soak.violate("no-leak", "labDown reported a problem", p);
  const wgLeft = wireguardGosRunning(soak).map((wg) => `${wg.node}: pid ${wg.pid}`);
  if (wgLeft.length) soak.violate("no-leak", "wireguard-go still runs after labDown", wgLeft.join("\n"));
  const leftNetns = listNamedNetns().filter((ns) => ns.startsWith(`${lab}-`));
  if (readLab(lab) || leftNetns.length) {
    const evidence = `lab.json: ${readLab(lab) ? "still there" : "gone"}; namespaces: ${leftNetns.join(" ") || "none"}`;
    soak.violate("no-leak", `lab ${lab} is not gone after labDown`, evidence);
  }
  const out = result(soak, o, build, summary);
  if (!o.json) process.stdout.write(table(soak, out));
  printResult(out);
  return out.ok ? 0 : 1;
}

process.exitCode = await main();
