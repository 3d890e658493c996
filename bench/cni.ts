/**
 * CNI plugin benchmark: wall time of ADD and DEL, our plugin (dist/cni/weave-net, which
 * forwards to the node's agent) against the reference (Debian's /usr/lib/cni/bridge with
 * host-local IPAM), both run the way a runtime runs them, inside the same lab node.
 *
 *   bun bench/cni.ts [--pods N] [--json] [--plugin PATH] [--raw FILE]
 *
 * Prints a table and, always as the last stdout line, one JSON line (only that with
 * --json). Exit: 0 done, 1 aborted, 2 usage/prerequisite, 3 done but a leak check
 * failed, 130 interrupted. docs/benchmarks.md ("CNI plugin") has the numbers.
 *
 * What it does:
 *   - brings up a 1-node lab with 0 pods (a real agent in namespace <lab>-n1);
 *   - creates N pod namespaces <lab>-p<i>; each pod gets one attachment of each plugin:
 *     ours as eth0, the reference as eth1 (so both see the same kind of namespace);
 *   - ADD phase: for each pod, one ADD of each plugin; the order alternates (even pods
 *     ours first, odd pods reference first) so both see the same machine state;
 *   - checks (untimed) that every pod has both addresses;
 *   - DEL phase: for each pod, one DEL of each plugin (same alternation, with the ADD
 *     result as prevResult, as libcni passes it);
 *   - leak checks (untimed): no address held by either IPAM, and 1.5 s after the last
 *     DEL (our host veths are deleted in batches by the agent) no pod interface and no
 *     host veth of either plugin left;
 *   - reports median and p99 (nearest rank) of each, and ours/reference ratios.
 *
 * Each timing is one process: performance.now() just before Bun.spawnSync of
 * `nsenter --net=/var/run/netns/<node> <plugin>` to its exit. One untimed warm-up
 * ADD+DEL of each plugin (in its own namespace) runs first so neither pays for a cold
 * page cache, then one more of each under /usr/bin/time for peak RSS. Any failed ADD or
 * DEL aborts the run: timings of failures mean nothing.
 *
 * Cleanup is always done (finally, also on SIGINT/SIGTERM): pod namespaces by name, the
 * lab by labDown, the temp dir. Traffic: none; the reference's 10.88.0.0/16 and our pod
 * addresses are only ever configured inside the namespaces this run made.
 */
import { existsSync, writeFileSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { labUp } from "../net/lab/lab.ts";
import { agentSocket, inNs, type LabTools } from "../net/lab/plugin.ts";
import { createNamedNetns, netnsPath } from "../net/host/netns.ts";
import { tools } from "../tests/support/lab.ts";
import {
  abort,
  BenchError,
  checkpoint,
  deleteNamespaces,
  downLab,
  failer,
  handleSignals,
  interrupted,
  labName,
  median,
  parseFlags,
  PATH,
  printResult,
  r2,
  r3,
  removeTmp,
  requireRoot,
  snapshotBinaries,
  stderrLog,
  warn,
} from "./lib.ts";

const REF_DIR = "/usr/lib/cni";
const REF_PLUGIN = join(REF_DIR, "bridge");
const TIME = "/usr/bin/time";
const USAGE_LINE = "usage: bun bench/cni.ts [--pods N] [--json] [--plugin PATH] [--raw FILE]";

type Opts = { pods: number; json: boolean; smoke: boolean; plugin: string; raw?: string };

function parseArgs(argv: string[]): Opts {
  const o: Opts = { pods: 100, json: false, smoke: false, plugin: resolve(tools.plugin) };
  const usage =
    USAGE_LINE +
    "\n" +
    "  --pods N       pods to ADD and DEL with each plugin (default 100; below 100 is a smoke run)\n" +
    "  --json         print only the JSON result line\n" +
    "  --plugin PATH  our plugin binary (default dist/cni/weave-net; the agent is always dist/weave)\n" +
    "  --raw FILE     also write every sample (ms since start, duration) as JSON to FILE";
  const path = (f: { value(): string | undefined }, what: string) => {
    const v = f.value();
    if (!v) fail(`${what} needs a ${what === "--plugin" ? "path" : "file name"}`);
    return resolve(v);
  };
  parseFlags(
    argv,
    fail,
    usage,
    (f) => {
      // Only the flags that take a value may be written --flag=value.
      if (f.inline !== undefined && !["--pods", "--plugin", "--raw"].includes(f.flag)) f.unknown();
      if (f.flag === "--json") o.json = true;
      else if (f.flag === "--pods") o.pods = f.int(1, 1000);
      else if (f.flag === "--plugin") o.plugin = path(f, "--plugin");
      else if (f.flag === "--raw") o.raw = path(f, "--raw");
      else return false;
      return true;
    },
    (a) => `unknown argument "${a}" (${USAGE_LINE})`,
  );
  o.smoke = o.pods < 100;
  return o;
}

const fail: (msg: string) => never = failer("cni");

// ---------------------------------------------------------------------------------------
// One plugin invocation, timed.

type Plugin = {
  label: "ours" | "reference";
  path: string;
  cniPath: string;
  ifname: string;
  conf: Record<string, unknown>;
};

type Call = { at: number; ms: number; code: number; stdout: string; stderr: string; maxRssKb?: number };

/**
 * Run `p` once as a runtime would. With `rssFile` (untimed runs only) the plugin runs under
 * `/usr/bin/time -f %M`, which reports its peak RSS. (Bun's resourceUsage().maxRSS is not
 * used: it reports the high-water mark over all children, not this one.)
 */
function invoke(
  node: string,
  p: Plugin,
  command: "ADD" | "DEL",
  pod: { netns: string; containerId: string; name: string },
  prevResult?: unknown,
  rssFile?: string,
): Call {
  const env: Record<string, string> = {
    PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.containerId,
    CNI_NETNS: pod.netns,
    CNI_IFNAME: p.ifname,
    CNI_PATH: p.cniPath,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`,
  };
  const stdin = Buffer.from(JSON.stringify(prevResult === undefined ? p.conf : { ...p.conf, prevResult }));
  const argv = [
    "nsenter",
    `--net=${netnsPath(node)}`,
    ...(rssFile ? [TIME, "-q", "-f", "%M", "-o", rssFile] : []),
    p.path,
  ];
  const t0 = performance.now();
  const r = Bun.spawnSync(argv, { env, stdin, stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - t0;
  let maxRssKb: number | undefined;
  if (rssFile && existsSync(rssFile)) {
    const v = Number(readFileSync(rssFile, "utf8").trim().split("\n").pop());
    if (Number.isFinite(v) && v > 0) maxRssKb = v;
  }
  return { at: t0, ms, code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString(), maxRssKb };
}

type AddResult = { ips: { address: string }[]; [k: string]: unknown };

function checkAdd(p: Plugin, pod: string, c: Call): AddResult {
  const what = `${p.label} ADD for ${pod}`;
  if (c.code !== 0) throw new BenchError(`${what} failed (exit ${c.code}): ${c.stdout.trim()} ${c.stderr.trim()}`);
  let res: AddResult;
  try {
    res = JSON.parse(c.stdout);
  } catch {
    throw new BenchError(`${what} exited 0 but printed no JSON result: ${JSON.stringify(c.stdout.slice(0, 200))}`);
  }
  if (!Array.isArray(res.ips) || res.ips.length === 0 || typeof res.ips[0]?.address !== "string") {
    throw new BenchError(`${what} exited 0 but its result has no ips: ${c.stdout.trim().slice(0, 300)}`);
  }
  return res;
}

function checkDel(p: Plugin, pod: string, c: Call): void {
  if (c.code !== 0)
    throw new BenchError(`${p.label} DEL for ${pod} failed (exit ${c.code}): ${c.stdout.trim()} ${c.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------
// Statistics.

/** Nearest-rank percentile: the smallest sample with at least q of the samples at or below it. */
function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length, Math.max(1, Math.ceil(q * s.length))) - 1]!;
}

const mb = (kb: number | null) => (kb === null ? "n/a" : (kb / 1024).toFixed(1));

type Series = { add: number[]; del: number[]; rssKb: number[]; addAt: number[]; delAt: number[] };
type Summary = {
  addMedianMs: number;
  addP99Ms: number;
  delMedianMs: number;
  delP99Ms: number;
  addMinMs: number;
  addMaxMs: number;
  delMinMs: number;
  delMaxMs: number;
  peakRssKb: number | null;
};

function summarize(s: Series): Summary {
  return {
    addMedianMs: r2(median(s.add)),
    addP99Ms: r2(pct(s.add, 0.99)),
    delMedianMs: r2(median(s.del)),
    delP99Ms: r2(pct(s.del, 0.99)),
    addMinMs: r2(Math.min(...s.add)),
    addMaxMs: r2(Math.max(...s.add)),
    delMinMs: r2(Math.min(...s.del)),
    delMaxMs: r2(Math.max(...s.del)),
    peakRssKb: s.rssKb.length ? Math.max(...s.rssKb) : null,
  };
}

// ---------------------------------------------------------------------------------------
// The run.

handleSignals("cni");

function containerId(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const log = stderrLog(o.json);
  requireRoot(fail);
  if (!existsSync(o.plugin)) fail(`${o.plugin} does not exist; run: bun run build`);
  if (!existsSync(REF_PLUGIN) || !existsSync(join(REF_DIR, "host-local"))) {
    fail(`${REF_PLUGIN} or host-local is missing; install Debian's containernetworking-plugins`);
  }
  if (o.smoke) log(`smoke run with ${o.pods} pod(s) (a real run uses at least 100)`);

  const name = labName("bc");
  // Run hard links of the binaries from the temp dir (see snapshotBinaries).
  const { tmp, pluginDir: ourDir, pluginBin: ourPath, weaveBin } = snapshotBinaries("cni", name, fail, o.plugin);
  const labTools = { ...tools, weave: [weaveBin], plugin: ourPath, log };
  const ours: Plugin = {
    label: "ours",
    path: ourPath,
    cniPath: ourDir,
    ifname: "eth0",
    conf: { cniVersion: "1.0.0", name: "weave", type: "weave-net" },
  };
  const ref: Plugin = {
    label: "reference",
    path: REF_PLUGIN,
    cniPath: REF_DIR,
    ifname: "eth1",
    conf: {
      cniVersion: "1.0.0",
      name: "refnet",
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      ipMasq: false,
      ipam: { type: "host-local", subnet: "10.88.0.0/16", dataDir: join(tmp, "host-local") },
    },
  };
  const made: string[] = []; // pod namespaces by name, removed in finally
  const series: Record<"ours" | "reference", Series> = {
    ours: { add: [], del: [], rssKb: [], addAt: [], delAt: [] },
    reference: { add: [], del: [], rssKb: [], addAt: [], delAt: [] },
  };
  let labMade = false;
  const problems: string[] = [];

  try {
    log(`lab ${name}: 1 node, agent starting...`);
    labMade = true; // labUp records its state before anything else; labDown reads it
    const lab = await labUp(name, 1, 0, labTools);
    const node = lab.nodes[0]!.netns;
    ours.conf.socket = agentSocket(lab.nodes[0]!); // as the node's conflist names it
    await checkpoint();

    const newPod = (suffix: string) => {
      const nsName = `${name}-${suffix}`;
      createNamedNetns(nsName);
      made.push(nsName);
      return { name: nsName, netns: netnsPath(nsName), containerId: containerId() };
    };

    // Warm-up (untimed): page cache for both binaries, first-use paths in the agent and
    // the kernel (the reference's cni0 bridge, our bridge), host-local's data dir.
    // Then one ADD+DEL of each under /usr/bin/time for peak RSS (untimed too).
    const rssFile = join(tmp, "rss");
    for (const [k, p] of [ours, ref, ours, ref].entries()) {
      const w = newPod(`w${k}`);
      const rss = k >= 2 && existsSync(TIME) ? rssFile : undefined;
      const a = invoke(node, p, "ADD", w, undefined, rss);
      const res = checkAdd(p, w.name, a);
      const d = invoke(node, p, "DEL", w, res, rss);
      checkDel(p, w.name, d);
      for (const c of [a, d]) if (c.maxRssKb) series[p.label].rssKb.push(c.maxRssKb);
    }
    await checkpoint();

    const pods: { name: string; netns: string; containerId: string; results: Record<string, AddResult> }[] = [];
    for (let i = 1; i <= o.pods; i++) pods.push({ ...newPod(`p${i}`), results: {} as Record<string, AddResult> });
    log(`${o.pods} pod namespaces made; ADD phase...`);
    await checkpoint();

    const order = (i: number) => (i % 2 === 0 ? [ours, ref] : [ref, ours]);
    for (let i = 0; i < pods.length; i++) {
      const pod = pods[i]!;
      for (const p of order(i)) {
        const c = invoke(node, p, "ADD", pod);
        pod.results[p.label] = checkAdd(p, pod.name, c);
        series[p.label].add.push(c.ms);
        series[p.label].addAt.push(c.at);
      }
      await checkpoint();
    }

    // Untimed: each pod really has both attachments with the addresses the results name.
    for (const pod of pods) {
      const addrs = inNs(pod.name, ["ip", "-o", "-4", "addr", "show"]).stdout;
      for (const p of [ours, ref]) {
        const want = pod.results[p.label]!.ips[0]!.address;
        const re = new RegExp(`\\b${p.ifname}\\s+inet ${want.replace(/[./]/g, "\\$&")}\\b`);
        if (!re.test(addrs))
          throw new BenchError(
            `${p.label} ADD for ${pod.name} returned ${want} on ${p.ifname}, but the pod has:\n${addrs.trim()}`,
          );
      }
    }
    log(`ADD phase done, both attachments present in every pod; DEL phase...`);
    await checkpoint();

    for (let i = 0; i < pods.length; i++) {
      const pod = pods[i]!;
      for (const p of order(i)) {
        const c = invoke(node, p, "DEL", pod, pod.results[p.label]);
        checkDel(p, pod.name, c);
        series[p.label].del.push(c.ms);
        series[p.label].delAt.push(c.at);
      }
      await checkpoint();
    }
    log(`DEL phase done`);

    // Untimed leak checks: after DEL, neither plugin should hold addresses or links.
    const held = inNs(node, [...labTools.weave, "status", "ipam"]);
    // Address lines are "<addr>/<len> <container id> <ifname> [pod]"; the bridge's own
    // address (id weave:expose) stays, and header/summary lines are not entries.
    const heldLines = held.stdout
      .split("\n")
      .filter((l) => /^\d+\.\d+\.\d+\.\d+\/\d+\s/.test(l))
      .filter((l) => l.split(/\s+/)[1] !== "weave:expose");
    if (held.code !== 0) problems.push(`weave status ipam failed: ${held.stderr.trim()}`);
    else if (heldLines.length)
      problems.push(
        `our agent still holds ${heldLines.length} address(es) after every DEL:\n  ${heldLines.slice(0, 5).join("\n  ")}`,
      );
    const hlDir = join(tmp, "host-local", "refnet");
    const hlLeft = existsSync(hlDir) ? readdirSync(hlDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
    if (hlLeft.length)
      problems.push(
        `host-local still holds ${hlLeft.length} address(es) after every DEL: ${hlLeft.slice(0, 5).join(" ")}`,
      );
    const podIfs = () => {
      const found: string[] = [];
      for (const pod of pods) {
        const links = inNs(pod.name, ["ip", "-o", "link", "show"]).stdout;
        for (const ifn of ["eth0", "eth1"])
          if (new RegExp(`^\\d+: ${ifn}[@:]`, "m").test(links)) found.push(`${pod.name}/${ifn}`);
      }
      return found;
    };
    // Our DEL leaves the pair to the agent's batched delete (host end down, in a link
    // group) for ~1 s, or until the pod namespace goes: report what is there right after
    // the DEL phase, then give the agent its second and require everything gone.
    const early = podIfs();
    if (early.length)
      log(
        `right after the DEL phase ${early.length} pod interface(s) still exist (batched delete pending): ${early.slice(0, 4).join(" ")}${early.length > 4 ? " ..." : ""}`,
      );
    await Bun.sleep(1500);
    const late = podIfs();
    if (late.length)
      problems.push(
        `${late.length} pod interface(s) still exist 1.5 s after the last DEL: ${late.slice(0, 8).join(" ")}`,
      );
    const left = inNs(node, ["ip", "-o", "link", "show"])
      .stdout.split("\n")
      .filter((l) => /^\d+: (vethwepl[0-9a-f]+|veth[0-9a-f]{8})@/.test(l));
    if (left.length)
      problems.push(
        `${left.length} host veth(s) left in ${node} 1.5 s after the last DEL:\n  ${left
          .slice(0, 5)
          .map((l) => l.slice(0, 120))
          .join("\n  ")}`,
      );
  } catch (e) {
    return abort("cni", e, () => cleanup(name, labMade, made, tmp, labTools));
  }
  const cleanupProblems = await cleanup(name, labMade, made, tmp, labTools);
  if (interrupted()) return 130;

  const so = summarize(series.ours);
  const sr = summarize(series.reference);
  const ratio = {
    addMedian: r3(so.addMedianMs / sr.addMedianMs),
    delMedian: r3(so.delMedianMs / sr.delMedianMs),
    addP99: r3(so.addP99Ms / sr.addP99Ms),
    delP99: r3(so.delP99Ms / sr.delP99Ms),
  };
  if (o.raw) {
    const raw = (s: Series) => ({
      add: s.add.map((ms, i) => [r2(s.addAt[i]!), r3(ms)]),
      del: s.del.map((ms, i) => [r2(s.delAt[i]!), r3(ms)]),
    });
    writeFileSync(
      o.raw,
      `${JSON.stringify({
        note: "[ms since process start, duration ms] in run order",
        ours: raw(series.ours),
        reference: raw(series.reference),
      })}\n`,
    );
  }
  const out = {
    bench: "cni",
    pods: o.pods,
    ours: {
      addMedianMs: so.addMedianMs,
      addP99Ms: so.addP99Ms,
      delMedianMs: so.delMedianMs,
      delP99Ms: so.delP99Ms,
      peakRssKb: so.peakRssKb,
    },
    reference: {
      addMedianMs: sr.addMedianMs,
      addP99Ms: sr.addP99Ms,
      delMedianMs: sr.delMedianMs,
      delP99Ms: sr.delP99Ms,
      peakRssKb: sr.peakRssKb,
    },
    ratio,
  };

  if (!o.json) {
    const row = (cells: (string | number)[]) =>
      cells.map((c, i) => (i === 0 ? String(c).padEnd(22) : String(c).padStart(11))).join("");
    const lines = [
      "",
      `CNI plugin, ${o.pods} pods, 1 node (wall time per invocation, ms; p99 = nearest rank)`,
      row(["", "ours", "reference", "ours/ref"]),
      row(["ADD median", so.addMedianMs.toFixed(2), sr.addMedianMs.toFixed(2), ratio.addMedian.toFixed(3)]),
      row(["ADD p99", so.addP99Ms.toFixed(2), sr.addP99Ms.toFixed(2), ratio.addP99.toFixed(3)]),
      row([
        "ADD min / max",
        `${so.addMinMs.toFixed(1)}/${so.addMaxMs.toFixed(1)}`,
        `${sr.addMinMs.toFixed(1)}/${sr.addMaxMs.toFixed(1)}`,
        "",
      ]),
      row(["DEL median", so.delMedianMs.toFixed(2), sr.delMedianMs.toFixed(2), ratio.delMedian.toFixed(3)]),
      row(["DEL p99", so.delP99Ms.toFixed(2), sr.delP99Ms.toFixed(2), ratio.delP99.toFixed(3)]),
      row([
        "DEL min / max",
        `${so.delMinMs.toFixed(1)}/${so.delMaxMs.toFixed(1)}`,
        `${sr.delMinMs.toFixed(1)}/${sr.delMaxMs.toFixed(1)}`,
        "",
      ]),
      row(["peak RSS (MB)", mb(so.peakRssKb), mb(sr.peakRssKb), ""]),
      `ours: ${o.plugin} (CNI_IFNAME=eth0); reference: ${REF_PLUGIN} + host-local (CNI_IFNAME=eth1)`,
      "",
    ];
    process.stdout.write(lines.join("\n"));
  }
  const allProblems = [...problems, ...cleanupProblems];
  warn("cni", allProblems);
  printResult(out);
  return allProblems.length ? 3 : 0;
}

async function cleanup(name: string, labMade: boolean, made: string[], tmp: string, t: LabTools): Promise<string[]> {
  const problems: string[] = [];
  // Pod namespaces first: that also destroys any veth pair still in them.
  deleteNamespaces(made, problems);
  if (labMade) await downLab(name, t, problems);
  removeTmp(tmp, problems);
  t.log(`cleaned up: ${made.length} pod namespace(s), lab ${name}, ${tmp}`);
  return problems;
}

process.exitCode = await main();
