/**
 * Idle agent benchmark: resident memory and CPU of every agent of a lab (default 5 nodes,
 * 2 pods each) over a window in which nothing is asked of them (default 60 s), and the
 * bytes the nodes send on the underlay meanwhile (mesh gossip; no pod traffic runs).
 *
 *   bun bench/agent.ts [--duration S] [--settle S] [--nodes N] [--pods N] [--json]
 *
 * Prints a table and, always as the last stdout line, one JSON line (only that with
 * --json). Exit: 0 done; 1 aborted (e.g. an agent exited during the window); 2 usage or
 * missing prerequisite; 3 done, but a cleanup step failed; 130 interrupted.
 * docs/benchmarks.md ("Idle agent") has the numbers.
 *
 * What it does:
 *   - brings up the lab (labUp, name "ba" + 6 characters from the pid) from hard links of
 *     dist/weave and dist/cni/weave-net in a temp dir, then waits --settle seconds (pod
 *     ADDs and the mesh's first exchanges are over by then);
 *   - every second for --duration seconds reads, for each agent pid (lab.json's
 *     agentPid; nsenter execs the agent, so that is the agent itself):
 *       /proc/<pid>/status          VmRSS (and RssAnon, RssFile, RssShmem)
 *       /proc/<pid>/smaps_rollup    Pss (the binary's pages are shared by all agents)
 *       /proc/<pid>/stat            utime + stime (all threads), cutime + cstime
 *   - CPU = (utime + stime at the end - at the start) / CLK_TCK / window wall time, as a
 *     percentage of one core; the peak 1-second value is from the per-second samples;
 *   - mesh traffic: eth0 byte and packet counters of each node namespace at the start and
 *     the end of the window (all of it is the agents' TCP 6783 gossip plus ARP; pods are
 *     idle and nothing else runs there).
 *
 * Cleanup is always done (finally, also on SIGINT/SIGTERM): the lab by labDown (which
 * stops the agents by pid and deletes the namespaces by name), the temp dir.
 */
import { existsSync, readFileSync } from "node:fs";
import { labUp } from "../net/lab/lab.ts";
import type { LabState } from "../net/lab/state.ts";
import {
  abort,
  BenchError,
  checkpoint,
  downLab,
  failer,
  handleSignals,
  interrupted,
  labName,
  parseFlags,
  PATH,
  printResult,
  r2,
  r3,
  removeTmp,
  requireBuild,
  requireRoot,
  snapshotBinaries,
  stderrLog,
  warn,
} from "./lib.ts";
const RSS_TARGET_KB = 40 * 1024; // 40 MB (MiB), VmRSS
const CPU_TARGET_PCT = 1; // % of one core

type Opts = { duration: number; settle: number; nodes: number; pods: number; json: boolean };

function usage(): string {
  return (
    "usage: bun bench/agent.ts [--duration S] [--settle S] [--nodes N] [--pods N] [--json]\n" +
    "  --duration S  measuring window in seconds (default 60)\n" +
    "  --settle S    seconds to wait after the lab is up before the window (default 5)\n" +
    "  --nodes N     lab nodes, one agent each (default 5)\n" +
    "  --pods N      pods per node (default 2)\n" +
    "  --json        print only the JSON result line"
  );
}

const fail: (msg: string) => never = failer("agent");

function parseArgs(argv: string[]): Opts {
  const o: Opts = { duration: 60, settle: 5, nodes: 5, pods: 2, json: false };
  parseFlags(argv, fail, usage(), (f) => {
    if (f.flag === "--json") o.json = true;
    else if (f.flag === "--duration") o.duration = f.int(1, 3600);
    else if (f.flag === "--settle") o.settle = f.int(0, 600);
    else if (f.flag === "--nodes") o.nodes = f.int(1, 50);
    else if (f.flag === "--pods") o.pods = f.int(0, 20);
    else return false;
    return true;
  });
  return o;
}

handleSignals("agent");

/** Sleep until `until` (performance.now() ms), in slices, so a signal stops it soon. */
async function sleepUntil(until: number): Promise<void> {
  for (;;) {
    const left = until - performance.now();
    if (left <= 0) return;
    await Bun.sleep(Math.min(left, 200));
    await checkpoint();
  }
}

// ---------------------------------------------------------------------------------------
// /proc readers.

type Mem = { rssKb: number; anonKb: number; fileKb: number; shmemKb: number; pssKb: number };
type Cpu = { own: number; children: number }; // clock ticks

function readMem(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
  let pssKb = NaN;
  try {
    pssKb = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? NaN);
  } catch {
    /* no smaps_rollup: Pss stays unknown */
  }
  return { rssKb: kb("VmRSS"), anonKb: kb("RssAnon"), fileKb: kb("RssFile"), shmemKb: kb("RssShmem"), pssKb };
}

function readCpu(pid: number): Cpu {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces; fields after the closing ")" are fixed.
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): utime = field 14, stime 15, cutime 16, cstime 17.
  const n = (field: number) => Number(f[field - 3]);
  return { own: n(14) + n(15), children: n(16) + n(17) };
}

function clkTck(): number {
  const r = Bun.spawnSync(["getconf", "CLK_TCK"], { env: { PATH }, stdout: "pipe", stderr: "ignore" });
  const n = Number(r.stdout.toString().trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
}

type Traffic = { txBytes: number; rxBytes: number; txPackets: number; rxPackets: number };

function eth0Counters(ns: string): Traffic {
  const r = Bun.spawnSync(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", "eth0"], {
    env: { PATH },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new BenchError(`ip -n ${ns} -s -j link show dev eth0: ${r.stderr.toString().trim()}`);
  const j = JSON.parse(r.stdout.toString())[0]?.stats64;
  return { txBytes: j.tx.bytes, rxBytes: j.rx.bytes, txPackets: j.tx.packets, rxPackets: j.rx.packets };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}/stat`);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------

const mib = (kb: number) => (kb / 1024).toFixed(1);

type AgentResult = {
  node: string;
  pid: number;
  rssFirstKb: number;
  rssMaxKb: number;
  rssLastKb: number;
  atMax: Mem;
  pssMaxKb: number;
  cpuPct: number;
  cpuPeak1sPct: number;
  childCpuPct: number;
  threads: number;
  tx: Traffic;
};

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const log = stderrLog(o.json);
  requireRoot(fail);
  requireBuild(fail);

  const name = labName("ba");
  const { tmp, weaveBin, pluginBin, build } = snapshotBinaries("agent", name, fail);
  const labTools = { weave: [weaveBin], plugin: pluginBin, log };
  const tck = clkTck();
  let labMade = false;
  const results: AgentResult[] = [];
  let windowS = 0;
  let loadavg = "";

  try {
    log(`lab ${name}: ${o.nodes} nodes, ${o.pods} pod(s) each...`);
    labMade = true;
    const lab: LabState = await labUp(name, o.nodes, o.pods, labTools);
    log(`settling ${o.settle} s...`);
    await sleepUntil(performance.now() + o.settle * 1000);

    const agents = lab.nodes.map((n) => ({ node: n.name, netns: n.netns, pid: n.agentPid }));
    for (const a of agents)
      if (!a.pid || !alive(a.pid))
        throw new BenchError(`the agent of ${a.node} (pid ${a.pid}) is not running before the window`);
    const mem: Mem[][] = agents.map(() => []);
    const cpu: Cpu[][] = agents.map(() => []);
    const tx0 = agents.map((a) => eth0Counters(a.netns));
    const t0 = performance.now();
    for (const [i, a] of agents.entries()) {
      cpu[i]!.push(readCpu(a.pid));
      mem[i]!.push(readMem(a.pid));
    }
    log(`window: ${o.duration} s, one sample per agent per second...`);
    for (let k = 1; k <= o.duration; k++) {
      await sleepUntil(t0 + k * 1000);
      for (const [i, a] of agents.entries()) {
        if (!alive(a.pid))
          throw new BenchError(`the agent of ${a.node} (pid ${a.pid}) exited during the window, after ${k - 1} s`);
        cpu[i]!.push(readCpu(a.pid));
        mem[i]!.push(readMem(a.pid));
      }
    }
    windowS = (performance.now() - t0) / 1000;
    const tx1 = agents.map((a) => eth0Counters(a.netns));
    loadavg = readFileSync("/proc/loadavg", "utf8").trim();

    for (const [i, a] of agents.entries()) {
      const m = mem[i]!;
      const c = cpu[i]!;
      const maxAt = m.reduce((best, x, j) => (x.rssKb > m[best]!.rssKb ? j : best), 0);
      let peak = 0;
      for (let j = 1; j < c.length; j++) peak = Math.max(peak, (c[j]!.own - c[j - 1]!.own) / tck);
      const threads = Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${a.pid}/status`, "utf8"))?.[1] ?? NaN);
      results.push({
        node: a.node,
        pid: a.pid,
        rssFirstKb: m[0]!.rssKb,
        rssMaxKb: m[maxAt]!.rssKb,
        rssLastKb: m[m.length - 1]!.rssKb,
        atMax: m[maxAt]!,
        pssMaxKb: Math.max(...m.map((x) => x.pssKb)),
        cpuPct: ((c[c.length - 1]!.own - c[0]!.own) / tck / windowS) * 100,
        cpuPeak1sPct: peak * 100, // ticks over one ~1 s interval
        childCpuPct: ((c[c.length - 1]!.children - c[0]!.children) / tck / windowS) * 100,
        threads,
        tx: {
          txBytes: tx1[i]!.txBytes - tx0[i]!.txBytes,
          rxBytes: tx1[i]!.rxBytes - tx0[i]!.rxBytes,
          txPackets: tx1[i]!.txPackets - tx0[i]!.txPackets,
          rxPackets: tx1[i]!.rxPackets - tx0[i]!.rxPackets,
        },
      });
    }
  } catch (e) {
    return abort("agent", e, () => cleanup(name, labMade, tmp, labTools));
  }
  const cleanupProblems = await cleanup(name, labMade, tmp, labTools);
  if (interrupted()) return 130;

  const worstRss = Math.max(...results.map((r) => r.rssMaxKb));
  const worstCpu = Math.max(...results.map((r) => r.cpuPct));
  const txTotal = results.reduce((s, r) => s + r.tx.txBytes, 0);
  const out = {
    bench: "agent",
    build,
    nodes: o.nodes,
    podsPerNode: o.pods,
    windowS: r2(windowS),
    worst: {
      rssMaxKb: worstRss,
      cpuPct: r3(worstCpu),
      cpuPeak1sPct: r2(Math.max(...results.map((r) => r.cpuPeak1sPct))),
      pssMaxKb: Math.max(...results.map((r) => r.pssMaxKb)),
    },
    targets: {
      rssKb: RSS_TARGET_KB,
      rssMet: worstRss <= RSS_TARGET_KB,
      cpuPct: CPU_TARGET_PCT,
      cpuMet: worstCpu < CPU_TARGET_PCT,
    },
    meshTxBytesPerS: r2(txTotal / windowS),
    agents: results.map((r) => ({
      node: r.node,
      rssMaxKb: r.rssMaxKb,
      rssFirstKb: r.rssFirstKb,
      rssLastKb: r.rssLastKb,
      anonKb: r.atMax.anonKb,
      fileKb: r.atMax.fileKb,
      pssMaxKb: r.pssMaxKb,
      cpuPct: r3(r.cpuPct),
      cpuPeak1sPct: r2(r.cpuPeak1sPct),
      childCpuPct: r3(r.childCpuPct),
      txBytes: r.tx.txBytes,
      txPackets: r.tx.txPackets,
    })),
  };

  if (!o.json) {
    const head = [
      "agent",
      "RSS max",
      "first/last",
      "anon/file",
      "PSS max",
      "CPU avg",
      "CPU 1s max",
      "children",
      "thr",
      "eth0 tx B/s",
      "pkts/s",
    ];
    const w = [14, 9, 13, 12, 9, 9, 11, 9, 5, 12, 8];
    const row = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("");
    const lines = [
      "",
      `Idle agents: ${o.nodes} nodes x ${o.pods} pods, ${windowS.toFixed(1)} s window after ${o.settle} s settle, ${results.length} agents (MB = MiB; CPU = % of one core, CLK_TCK ${tck})`,
      row(head),
      ...results.map((r) =>
        row([
          r.node,
          mib(r.rssMaxKb),
          `${mib(r.rssFirstKb)}/${mib(r.rssLastKb)}`,
          `${mib(r.atMax.anonKb)}/${mib(r.atMax.fileKb)}`,
          mib(r.pssMaxKb),
          `${r.cpuPct.toFixed(3)}%`,
          `${r.cpuPeak1sPct.toFixed(1)}%`,
          `${r.childCpuPct.toFixed(2)}%`,
          String(r.threads),
          (r.tx.txBytes / windowS).toFixed(0),
          (r.tx.txPackets / windowS).toFixed(1),
        ]),
      ),
      row([
        "worst",
        mib(worstRss),
        "",
        "",
        mib(out.worst.pssMaxKb),
        `${worstCpu.toFixed(3)}%`,
        `${out.worst.cpuPeak1sPct.toFixed(1)}%`,
        "",
        "",
        "",
        "",
      ]),
      "",
      `targets: RSS <= ${mib(RSS_TARGET_KB)} MB: ${out.targets.rssMet ? "met" : "NOT met"} (worst ${mib(worstRss)}); CPU < ${CPU_TARGET_PCT}%: ${out.targets.cpuMet ? "met" : "NOT met"} (worst ${worstCpu.toFixed(3)}%)`,
      `mesh traffic (eth0 tx of all nodes): ${(txTotal / windowS).toFixed(0)} B/s in total, ${(txTotal / windowS / results.length).toFixed(0)} B/s per node`,
      `load average at the end: ${loadavg}; build: dist/weave modified ${build}`,
      "",
    ];
    process.stdout.write(lines.join("\n"));
  }
  warn("agent", cleanupProblems);
  printResult(out);
  return cleanupProblems.length ? 3 : 0;
}

async function cleanup(
  name: string,
  labMade: boolean,
  tmp: string,
  t: { weave: string[]; plugin: string; log(m: string): void },
): Promise<string[]> {
  const problems: string[] = [];
  if (labMade) await downLab(name, t, problems);
  removeTmp(tmp, problems);
  t.log(`cleaned up: lab ${name}, ${tmp}`);
  return problems;
}

process.exitCode = await main();
