/**
 * IPAM benchmark, two parts:
 *   (a) throughput of the agent's address API on one node: N `POST /ip/<id>` with a
 *       bounded number in flight, every address checked unique, then N `DELETE /ip/<id>`;
 *   (b) join latency: a third agent started into a running 2-node lab, timed from
 *       spawning it to its first successful `POST /ip/<id>`; repeated, fresh lab each time.
 *
 *   bun bench/ipam.ts [--allocs N] [--concurrency C] [--joins J] [--poll MS] [--skip-alloc] [--skip-join]
 *                     [--logs DIR] [--quiet PCT] [--quiet-seconds S] [--quiet-max S] [--json]
 *
 * Prints a table and, always as the last stdout line, one JSON line (only that with
 * --json). Exit: 0 done; 1 aborted (a failed request, a duplicate address, a join that
 * never got an address, or another error); 2 usage or missing prerequisite; 3 done, but a
 * leak or cleanup check failed; 130 interrupted. docs/benchmarks.md ("IPAM") has the
 * numbers.
 *
 * (a) A lab with one node and no pods (labUp, name "bi" + 5 characters + "a"). The load
 * generator is a small Bun script (written to the temp dir) run inside the node's
 * namespace, `nsenter --net=/var/run/netns/<node> bun <script>`, so its fetch reaches the
 * agent at 127.0.0.1:6784 as the plugin's does. It runs C workers, each issuing its next
 * request when the previous one answered, until N are done: first 200 untimed warm-up
 * allocations and releases (other ids), then the timed POST phase (every answer must be
 * 201 with an address in the range), then the timed DELETE phase (every answer 204).
 * Rate = N / (last answer - first request) of the phase; the rate of each tenth of a phase
 * is reported too. Afterwards the agent must hold no address for any of the ids
 * (`weave status ipam`). `bun` is the Bun that runs this benchmark (process.execPath).
 *
 * (b) For each join: a fresh 2-node lab with no pods (labUp, "bi" + 5 + one of 0-9, b-k),
 * then node 3 made the way labUp makes nodes (lab.ts createNode: namespace <lab>-n3, a veth
 * from the underlay bridge to its eth0 198.18.0.13/24, recorded in lab.json so labDown
 * removes it), listed as a Node by the lab's API before its agent is started with lab.ts's
 * startAgent (`weave agent --data-dir <lab dir>/n3 --nickname <lab>-n3 --kubeconfig
 * <lab dir>/node-kubeconfig`: peers from the Node list, as in a cluster).
 * A poller (a Bun script inside <lab>-n3, started and ready before the agent) POSTs
 * /ip/<probe id> every --poll ms until one answers 201; join time = that answer's
 * arrival - the moment just before the agent was spawned (both read from
 * performance.timeOrigin + performance.now(), wall-clock milliseconds, comparable across
 * the two processes). It also notes when the agent first answered at all (any status).
 *
 * Before each timed part (the POST/DELETE run, each join) the run waits until the machine's
 * CPUs were >= 90 % idle over 3 s (--quiet; the machine is shared), for at most 120 s.
 *
 * Cleanup is always done (finally, also on SIGINT/SIGTERM): the helper processes by pid,
 * each lab by labDown (agents by pid, namespaces by name; node 3 included), the temp dir.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createNode, labUp, startAgent, waitNodesListed } from "../net/lab/lab.ts";
import { findNode, mustReadLab, updateLab } from "../net/lab/state.ts";
import type { LabTools } from "../net/lab/plugin.ts";
import { netnsPath } from "../net/host/netns.ts";
import {
  abort,
  BenchError,
  checkpoint,
  downLab as downLabIfUp,
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
  quietFlag,
  r1,
  removeTmp,
  requireBuild,
  requireRoot,
  running,
  snapshotBinaries,
  stderrLog,
  throwIfInterrupted,
  waitQuiet,
  warn,
} from "./lib.ts";
const ALLOC_TARGET = 10_000; // allocations per second
const JOIN_TARGET_MS = 1000;
const JOIN_SUFFIXES = "0123456789bcdefghijk"; // (a) uses "a"

type Opts = {
  allocs: number;
  concurrency: number;
  joins: number;
  pollMs: number;
  alloc: boolean;
  join: boolean;
  json: boolean;
  logs?: string;
  quiet: number;
  quietSeconds: number;
  quietMax: number;
};

function usage(): string {
  return (
    "usage: bun bench/ipam.ts [--allocs N] [--concurrency C] [--joins J] [--poll MS] [--skip-alloc] [--skip-join] [--logs DIR] [--quiet PCT] [--json]\n" +
    "  --allocs N       allocations (then releases) through the API (default 20000)\n" +
    "  --concurrency C  requests in flight (default 32)\n" +
    `  --joins J        joins to time, each into a fresh 2-node lab (default 5, at most ${JOIN_SUFFIXES.length})\n` +
    "  --poll MS        the join poller's pause between attempts (default 5)\n" +
    "  --skip-alloc     skip part (a); --skip-join skips part (b)\n" +
    "  --logs DIR       copy the agents' logs of each join lab into DIR 3 s after the join (untimed)\n" +
    "  --quiet PCT      before each timed part wait until the CPUs were at least PCT % idle over\n" +
    "                   --quiet-seconds S (default 90 over 3 s; 0 = no wait), at most --quiet-max S (120)\n" +
    "  --json           print only the JSON result line"
  );
}

const fail: (msg: string) => never = failer("ipam");

function parseArgs(argv: string[]): Opts {
  const o: Opts = {
    allocs: 20000,
    concurrency: 32,
    joins: 5,
    pollMs: 5,
    alloc: true,
    join: true,
    json: false,
    ...QUIET_DEFAULTS,
  };
  parseFlags(argv, fail, usage(), (f) => {
    if (f.flag === "--json") o.json = true;
    else if (f.flag === "--skip-alloc") o.alloc = false;
    else if (f.flag === "--skip-join") o.join = false;
    else if (f.flag === "--allocs") o.allocs = f.int(1, 500000);
    else if (f.flag === "--concurrency") o.concurrency = f.int(1, 1024);
    else if (f.flag === "--joins") o.joins = f.int(1, JOIN_SUFFIXES.length);
    else if (f.flag === "--poll") o.pollMs = f.int(1, 1000);
    else if (f.flag === "--logs") {
      const v = f.value();
      if (!v) fail("--logs needs a directory");
      o.logs = resolve(v);
    } else return quietFlag(f, o);
    return true;
  });
  if (!o.alloc && !o.join) fail("nothing to do (--skip-alloc and --skip-join)");
  return o;
}

// ---------------------------------------------------------------------------------------
// Helper processes, tracked by pid (lib.ts's `running`).

handleSignals("ipam");

/** Start `bun <script> <args>` inside namespace `ns`; stdout is read line by line. */
function startHelper(ns: string, script: string, args: string[]) {
  const p = Bun.spawn(["nsenter", `--net=${netnsPath(ns)}`, process.execPath, script, ...args], {
    env: { PATH },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  running.add(p.pid);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  const stderr = new Response(p.stderr).text();
  const reader = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of p.stdout as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        for (const w of waiters.splice(0)) w();
      }
    }
    if (buf) lines.push(buf);
    for (const w of waiters.splice(0)) w();
  })();
  const done = Promise.all([reader, p.exited]).finally(() => running.delete(p.pid));
  return {
    pid: p.pid,
    /** The next stdout line, or undefined once the helper has exited. */
    async line(): Promise<string | undefined> {
      for (;;) {
        if (lines.length) return lines.shift();
        if (!running.has(p.pid)) return undefined;
        await new Promise<void>((r) => {
          waiters.push(r);
          done.then(() => r());
        });
      }
    },
    async finish(): Promise<{ code: number; stderr: string }> {
      await done;
      return { code: p.exitCode ?? -1, stderr: await stderr };
    },
  };
}

// ---------------------------------------------------------------------------------------
// Quiet gate (lib.ts's waitQuiet) before each timed part; --quiet 0 turns it off.

async function gate(o: Opts, log: (m: string) => void): Promise<{ quiet: boolean; idlePct: number }> {
  if (o.quiet <= 0) return { quiet: true, idlePct: NaN };
  const q = await waitQuiet(o.quiet, o.quietSeconds, o.quietMax, log);
  if (!q.quiet)
    log(`the machine was not ${o.quiet} % idle within ${o.quietMax} s (${q.idlePct.toFixed(0)} %): measuring anyway`);
  return q;
}

// ---------------------------------------------------------------------------------------
// The helper scripts (run inside a node namespace).

const LOADGEN = `
const [n, conc, prefix] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const base = "http://127.0.0.1:6784/ip/";
async function phase(method, ids, ok) {
  const answers = new Array(ids.length);
  const bad = [];
  let next = 0, done = 0;
  const t0 = performance.now();
  const marks = []; // ms since t0 at each tenth of the requests answered
  const step = Math.max(1, Math.floor(ids.length / 10));
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= ids.length) return;
      try {
        const r = await fetch(base + ids[i], { method });
        const body = (await r.text()).trim();
        if (r.status !== ok) bad.push(method + " " + ids[i] + ": " + r.status + " " + body.slice(0, 200));
        answers[i] = body;
      } catch (e) {
        bad.push(method + " " + ids[i] + ": " + (e && (e.code || e.message)));
      }
      if (++done % step === 0) marks.push(performance.now() - t0);
    }
  }
  await Promise.all(Array.from({ length: Math.min(conc, ids.length) }, worker));
  return { ms: performance.now() - t0, answers, bad, marks, step };
}
const warm = Array.from({ length: Math.min(200, n) }, (_, i) => prefix + "w" + i);
const w1 = await phase("POST", warm, 201);
const w2 = await phase("DELETE", warm, 204);
if (w1.bad.length || w2.bad.length) {
  console.log(JSON.stringify({ error: "warm-up failed", bad: [...w1.bad, ...w2.bad].slice(0, 10) }));
  process.exit(1);
}
const ids = Array.from({ length: n }, (_, i) => prefix + i);
const a = await phase("POST", ids, 201);
if (a.bad.length) {
  console.log(JSON.stringify({ error: "allocation failed", failed: a.bad.length, bad: a.bad.slice(0, 10), allocMs: a.ms }));
  process.exit(1);
}
const d = await phase("DELETE", ids, 204);
console.log(JSON.stringify({ allocMs: a.ms, releaseMs: d.ms, allocMarks: a.marks, releaseMarks: d.marks, step: a.step, addresses: a.answers, releaseFailed: d.bad.length, bad: d.bad.slice(0, 10) }));
`;

const POLLER = `
const [id, pollMs, timeoutMs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const now = () => performance.timeOrigin + performance.now();
const url = "http://127.0.0.1:6784/ip/" + id;
const statuses = {};
const phases = []; // each change of (status, answer): when it was first seen
let firstAnswer = null, attempts = 0, prev = "";
console.log("ready");
const deadline = now() + timeoutMs;
for (;;) {
  attempts++;
  let status = "refused";
  let body = "";
  try {
    const r = await fetch(url, { method: "POST" });
    body = (await r.text()).trim();
    status = String(r.status);
    if (firstAnswer === null) firstAnswer = now();
  } catch (e) {
    status = (e && e.code) || "error";
  }
  statuses[status] = (statuses[status] || 0) + 1;
  const key = status + " " + (status === "201" ? "" : body.slice(0, 160));
  if (key !== prev) phases.push({ at: now(), what: key.trim() });
  prev = key;
  if (status === "201") {
    console.log(JSON.stringify({ at: now(), firstAnswer, attempts, statuses, phases, address: body }));
    process.exit(0);
  }
  if (now() > deadline) {
    console.log(JSON.stringify({ error: "timeout", firstAnswer, attempts, statuses, phases, last: status + " " + body.slice(0, 200) }));
    process.exit(1);
  }
  await Bun.sleep(pollMs);
}
`;

// ---------------------------------------------------------------------------------------

function ipToInt(ip: string): number {
  return ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}

function inRange(cidr: string, range: string): boolean {
  const [ip, len] = cidr.split("/");
  const [rip, rlen] = range.split("/");
  if (len !== rlen || !/^\d+\.\d+\.\d+\.\d+$/.test(ip ?? "")) return false;
  const mask = Number(rlen) === 0 ? 0 : (0xffffffff << (32 - Number(rlen))) >>> 0;
  return (ipToInt(ip!) & mask) >>> 0 === (ipToInt(rip!) & mask) >>> 0;
}

/** Rates (per second) of each tenth of a phase, from the times at which each tenth was done. */
function slices(marks: number[], step: number): number[] {
  return marks.map((t, i) => (step / (t - (i ? marks[i - 1]! : 0))) * 1000);
}

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

type AllocResult = {
  n: number;
  concurrency: number;
  allocMs: number;
  releaseMs: number;
  allocPerS: number;
  releasePerS: number;
  unique: number;
  first: string;
  last: string;
  heldAfter: number;
  quiet: boolean;
  allocSlices: number[];
  releaseSlices: number[];
};
type JoinResult = {
  lab: string;
  ms: number;
  firstAnswerMs: number | null;
  attempts: number;
  statuses: Record<string, number>;
  phases: { ms: number; what: string }[];
  address: string;
  quiet: boolean;
};

async function partAlloc(
  o: Opts,
  name: string,
  tmp: string,
  labTools: LabTools,
  labs: string[],
  log: (m: string) => void,
): Promise<AllocResult> {
  const lab = `${name}a`;
  log(`(a) lab ${lab}: 1 node...`);
  labs.push(lab);
  const s = await labUp(lab, 1, 0, labTools);
  const node = s.nodes[0]!;
  await checkpoint();
  const script = join(tmp, "loadgen.js");
  writeFileSync(script, LOADGEN);
  const prefix = `bench-ipam-${name}-`;
  const q = await gate(o, log);
  log(`(a) ${o.allocs} POST /ip then ${o.allocs} DELETE /ip, ${o.concurrency} in flight, from inside ${node.netns}...`);
  const h = startHelper(node.netns, script, [String(o.allocs), String(o.concurrency), prefix]);
  const outLine = await h.line();
  const fin = await h.finish();
  throwIfInterrupted();
  // biome-ignore lint/suspicious/noExplicitAny: the child's JSON line, read field by field below
  let res: any;
  try {
    res = JSON.parse(outLine ?? "");
  } catch {
    throw new BenchError(
      `the load generator (nsenter --net=${netnsPath(node.netns)} bun ${script}) exited ${fin.code} without a result:\n${(outLine ?? "") + fin.stderr.trim().slice(0, 800)}`,
    );
  }
  if (res.error)
    throw new BenchError(
      `load generator: ${res.error}${res.failed ? ` (${res.failed} of ${o.allocs})` : ""}:\n  ${res.bad.join("\n  ")}`,
    );
  if (res.releaseFailed)
    throw new BenchError(`load generator: ${res.releaseFailed} DELETE(s) failed:\n  ${res.bad.join("\n  ")}`);
  const addrs = res.addresses as string[];
  const range = "10.32.0.0/12";
  const outside = addrs.filter((a) => !inRange(a, range));
  if (outside.length)
    throw new BenchError(`${outside.length} allocation(s) not in ${range}, e.g. ${outside.slice(0, 5).join(" ")}`);
  const seen = new Map<string, number>();
  const dups: string[] = [];
  addrs.forEach((a, i) => {
    if (seen.has(a)) dups.push(`${a} for ids ${prefix}${seen.get(a)} and ${prefix}${i}`);
    else seen.set(a, i);
  });
  if (dups.length)
    throw new BenchError(
      `${dups.length} duplicate address(es) among ${addrs.length} allocations:\n  ${dups.slice(0, 10).join("\n  ")}`,
    );
  // Untimed: nothing of ours is held any more.
  const list = Bun.spawnSync(["nsenter", `--net=${netnsPath(node.netns)}`, ...labTools.weave, "status", "ipam"], {
    env: { PATH },
    stdout: "pipe",
    stderr: "pipe",
  });
  const held = list.stdout
    .toString()
    .split("\n")
    .filter((l) => l.includes(prefix)).length;
  return {
    n: o.allocs,
    concurrency: o.concurrency,
    allocMs: res.allocMs,
    releaseMs: res.releaseMs,
    allocPerS: (o.allocs / res.allocMs) * 1000,
    releasePerS: (o.allocs / res.releaseMs) * 1000,
    unique: seen.size,
    first: addrs[0]!,
    last: addrs[addrs.length - 1]!,
    heldAfter: held,
    quiet: q.quiet,
    allocSlices: slices(res.allocMarks, res.step),
    releaseSlices: slices(res.releaseMarks, res.step),
  };
}

async function oneJoin(
  o: Opts,
  lab: string,
  tmp: string,
  labTools: LabTools,
  labs: string[],
  log: (m: string) => void,
): Promise<JoinResult> {
  labs.push(lab);
  const s = await labUp(lab, 2, 0, labTools);
  await checkpoint();
  // Node 3, made as labUp makes nodes (its Node listed before its agent starts).
  const node = createNode(lab, 3);
  await waitNodesListed(s, [node.name]);

  const script = join(tmp, "poller.js");
  if (!existsSync(script)) writeFileSync(script, POLLER);
  const q = await gate(o, log);
  const poller = startHelper(node.netns, script, [`bench-join-${lab}`, String(o.pollMs), "30000"]);
  const ready = await poller.line();
  if (ready !== "ready") {
    const f = await poller.finish();
    throw new BenchError(`the join poller did not start (exit ${f.code}): ${ready ?? ""} ${f.stderr.trim()}`);
  }
  await Bun.sleep(20); // its first attempts (refused) are under way
  const t0 = nowMs();
  const pid = startAgent(labTools, node, mustReadLab(lab));
  updateLab(lab, (state) => {
    findNode(state, node.name).agentPid = pid;
  });
  const line = await poller.line();
  const fin = await poller.finish();
  throwIfInterrupted();
  // biome-ignore lint/suspicious/noExplicitAny: the child's JSON line, read field by field below
  let r: any;
  try {
    r = JSON.parse(line ?? "");
  } catch {
    throw new BenchError(`the join poller exited ${fin.code} without a result: ${line ?? ""} ${fin.stderr.trim()}`);
  }
  if (r.error) {
    const agentLog = existsSync(join(node.dataDir, "agent.log"))
      ? readFileSync(join(node.dataDir, "agent.log"), "utf8").trim().split("\n").slice(-15).join("\n")
      : "(no agent.log)";
    throw new BenchError(
      `node 3 of lab ${lab} got no address within 30 s: POST http://127.0.0.1:6784/ip/bench-join-${lab} inside ${node.netns}, ${r.attempts} attempts, answers ${JSON.stringify(r.statuses)}, last: ${r.last}\n` +
        `agent: ${node.name} (data dir ${node.dataDir}), started with the lab's node kubeconfig\nlast lines of its log:\n${agentLog}`,
    );
  }
  if (o.logs) {
    await Bun.sleep(3000); // what the agents do just after the join is part of the story
    mkdirSync(o.logs, { recursive: true });
    for (const n of s.nodes) {
      const f = join(n.dataDir, "agent.log");
      if (existsSync(f)) copyFileSync(f, join(o.logs, `${n.name}.log`));
    }
  }
  return {
    lab,
    ms: r.at - t0,
    firstAnswerMs: r.firstAnswer === null ? null : r.firstAnswer - t0,
    attempts: r.attempts,
    statuses: r.statuses,
    phases: (r.phases as { at: number; what: string }[]).map((p) => ({ ms: p.at - t0, what: p.what })),
    address: r.address,
    quiet: q.quiet,
  };
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const log = stderrLog(o.json);
  requireRoot(fail);
  requireBuild(fail);

  const name = labName("bi", 5, 1);
  const { tmp, weaveBin, pluginBin, build } = snapshotBinaries("ipam", name, fail);
  const labTools: LabTools = { weave: [weaveBin], plugin: pluginBin, log };
  const labs: string[] = [];
  let alloc: AllocResult | undefined;
  const joins: JoinResult[] = [];
  const problems: string[] = [];

  try {
    if (o.alloc) {
      alloc = await partAlloc(o, name, tmp, labTools, labs, log);
      if (alloc.heldAfter)
        problems.push(`after every DELETE the agent still holds ${alloc.heldAfter} address(es) of the benchmark's ids`);
      log(
        `(a) ${alloc.allocPerS.toFixed(0)} allocations/s, ${alloc.releasePerS.toFixed(0)} releases/s, ${alloc.unique} unique addresses`,
      );
      problems.push(...(await downLab(`${name}a`, labTools, labs)));
      await checkpoint();
    }
    if (o.join) {
      for (let k = 0; k < o.joins; k++) {
        const lab = name + JOIN_SUFFIXES[k]!;
        log(`(b) join ${k + 1}/${o.joins}: lab ${lab}, 2 nodes, then node 3...`);
        const j = await oneJoin(o, lab, tmp, labTools, labs, log);
        joins.push(j);
        log(
          `(b) join ${k + 1}: first address ${j.address} after ${j.ms.toFixed(1)} ms (agent answered first after ${j.firstAnswerMs?.toFixed(1) ?? "-"} ms; answers ${JSON.stringify(j.statuses)})`,
        );
        for (const p of j.phases) log(`      +${p.ms.toFixed(1).padStart(7)} ms  ${p.what}`);
        problems.push(...(await downLab(lab, labTools, labs)));
        await checkpoint();
      }
    }
  } catch (e) {
    return abort("ipam", e, () => cleanup(labs, tmp, labTools));
  }
  problems.push(...(await cleanup(labs, tmp, labTools)));
  if (interrupted()) return 130;

  const joinMs = joins.map((j) => j.ms);
  const out = {
    bench: "ipam",
    build,
    alloc: alloc
      ? {
          n: alloc.n,
          concurrency: alloc.concurrency,
          allocPerS: Math.round(alloc.allocPerS),
          releasePerS: Math.round(alloc.releasePerS),
          allocMs: r1(alloc.allocMs),
          releaseMs: r1(alloc.releaseMs),
          unique: alloc.unique,
          targetMet: alloc.allocPerS >= ALLOC_TARGET,
          quiet: alloc.quiet,
          allocPerSByTenth: alloc.allocSlices.map(Math.round),
          releasePerSByTenth: alloc.releaseSlices.map(Math.round),
        }
      : null,
    join: joins.length
      ? {
          n: joins.length,
          medianMs: r1(median(joinMs)),
          minMs: r1(Math.min(...joinMs)),
          maxMs: r1(Math.max(...joinMs)),
          samplesMs: joinMs.map(r1),
          firstAnswerMs: joins.map((j) => (j.firstAnswerMs === null ? null : r1(j.firstAnswerMs))),
          targetMet: median(joinMs) <= JOIN_TARGET_MS,
          busyJoins: joins.filter((j) => !j.quiet).length,
        }
      : null,
  };
  if (!o.json) {
    const lines = ["", `build: dist/weave modified ${build}`];
    if (alloc) {
      lines.push(
        `(a) address API on one node: ${alloc.n} ids, ${alloc.concurrency} requests in flight, from inside the node namespace`,
        `    POST /ip/<id>    ${alloc.allocPerS.toFixed(0).padStart(8)} /s   (${alloc.allocMs.toFixed(0)} ms for ${alloc.n}; target >= ${ALLOC_TARGET}/s: ${out.alloc!.targetMet ? "met" : "NOT met"})`,
        `    DELETE /ip/<id>  ${alloc.releasePerS.toFixed(0).padStart(8)} /s   (${alloc.releaseMs.toFixed(0)} ms for ${alloc.n})`,
        `    ${alloc.unique} unique addresses (first ${alloc.first}, last ${alloc.last}); held after the releases: ${alloc.heldAfter}`,
        `    rate in each tenth of the run (/s): POST   ${alloc.allocSlices.map((x) => x.toFixed(0)).join(" ")}`,
        `                                        DELETE ${alloc.releaseSlices.map((x) => x.toFixed(0)).join(" ")}`,
        "",
      );
    }
    if (joins.length) {
      lines.push(
        `(b) join: spawn of node 3's agent -> its first 201 from POST /ip (2 live nodes; poll every ${o.pollMs} ms)`,
      );
      lines.push(
        `    ${"join".padEnd(6)}${"first address".padStart(14)}${"first answer".padStart(14)}${"attempts".padStart(10)}  answers`,
      );
      for (const [i, j] of joins.entries()) {
        const first = `${j.ms.toFixed(1)} ms`;
        const answer = `${j.firstAnswerMs?.toFixed(1) ?? "-"} ms`;
        const answers = Object.entries(j.statuses)
          .map(([k, v]) => `${k}x${v}`)
          .join(" ");
        const row = `${String(i + 1).padEnd(6)}${first.padStart(14)}${answer.padStart(14)}${String(j.attempts).padStart(10)}`;
        lines.push(`    ${row}  ${answers}`);
      }
      lines.push(
        `    median ${median(joinMs).toFixed(1)} ms (min ${Math.min(...joinMs).toFixed(1)}, max ${Math.max(...joinMs).toFixed(1)}); target <= ${JOIN_TARGET_MS} ms: ${out.join!.targetMet ? "met" : "NOT met"}`,
        "",
      );
    }
    process.stdout.write(lines.join("\n"));
  }
  warn("ipam", problems);
  printResult(out);
  return problems.length ? 3 : 0;
}

async function downLab(lab: string, t: LabTools, labs: string[]): Promise<string[]> {
  const i = labs.indexOf(lab);
  if (i >= 0) labs.splice(i, 1);
  const problems: string[] = [];
  await downLabIfUp(lab, t, problems);
  return problems;
}

async function cleanup(labs: string[], tmp: string, t: LabTools): Promise<string[]> {
  const problems: string[] = [];
  await endTracked();
  for (const lab of [...labs]) problems.push(...(await downLab(lab, t, labs)));
  removeTmp(tmp, problems);
  t.log(`cleaned up: labs, helpers, ${tmp}`);
  return problems;
}

process.exitCode = await main();
