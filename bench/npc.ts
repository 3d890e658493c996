/**
 * NetworkPolicy benchmark (issue 10), on one 3-node lab:
 *   (a) time from a POST of a NetworkPolicy to the lab's API server (what `kubectl apply`
 *       sends) to the policy in every node's kernel, with --policies policies and --pods
 *       pod addresses already in place: median over --applies applies (target <= 1 s);
 *   (b) pod-to-pod TCP throughput (iperf3, one stream) and new TCP connections per second
 *       from a pod on n2 to a pod on n1 with those policies in place, as ratios to no
 *       policies in the same run (targets >= 0.97 and >= 0.9);
 *   (c) each node's `weave npc` resident memory at that size.
 *
 *   bun bench/npc.ts [--policies 100] [--pods 1000] [--applies 10] [--time 5] [--quiet PCT] [--json]
 *
 * Prints a table and, always as the last stdout line, one JSON line. Exit: 0 done; 1
 * aborted; 2 usage or missing prerequisite; 130 interrupted. docs/benchmarks.md
 * ("NetworkPolicy") has the numbers.
 *
 * The lab (labUp, "bn" + 6 characters) has real pods in namespace `bench`: `server` on n1
 * and one `target` on each node (role=bench), `client` on n2 (role=client). The --pods
 * pods exist only as API objects, bound to a node no lab has, with their status written
 * through the status subresource (Running, an address outside the lab's range), in
 * groups of 10 (label group=g<i>). The standing policies select every role=bench pod:
 * --policies - 1 of them allow one group each on the two benchmark ports, the last (by
 * name) allows the client, so the client's new connections walk every other rule first.
 *
 * (a) Each measured policy selects the role=bench pods and allows one more group on port
 * 80. Enforced on a node = its pod's chain `ingress/bench/<pod>` in the node's kernel has
 * a rule whose comment names the new policy, seen by polling `nft -j list chain` every
 * ~5 ms (plus the poll's own few ms) in each node; the figure is the slowest node. The
 * policy is deleted (and its removal awaited the same way) before the next.
 * (b) No policies, then the standing policies, then none again: the ratio is against the
 * mean of the two runs without, so a drift of the machine during the run shows in both.
 * Cleanup is always done (finally, also on SIGINT/SIGTERM): helper processes by pid, the
 * lab by labDown, the temp dir.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { netnsPath } from "../net/host/netns.ts";
import { LabApi } from "../net/lab/api-client.ts";
import { createPods, labUp } from "../net/lab/lab.ts";
import { findNode, type LabState, mustReadLab } from "../net/lab/state.ts";
import { tools } from "../tests/support/lab.ts";
import {
  abort,
  checkpoint,
  downLab,
  endTracked,
  failer,
  handleSignals,
  interrupted,
  labName,
  median,
  parseFlags,
  printResult,
  QUIET_DEFAULTS,
  quietFlag,
  r1,
  r2,
  r3,
  removeTmp,
  requireBuild,
  requireRoot,
  stderrLog,
  waitQuiet,
} from "./lib.ts";
import {
  connectionRate,
  createGhostPods,
  createStandingPolicies,
  deleteStandingPolicies,
  iperf,
  measuredPolicy,
  NS,
  policyPath,
  rssMiB,
  waitInKernels,
} from "./npc-load.ts";

const APPLY_TARGET_MS = 1000;
const THROUGHPUT_TARGET = 0.97;
const CONN_TARGET = 0.9;

type Opts = { policies: number; pods: number; applies: number; time: number; json: boolean } & typeof QUIET_DEFAULTS;

const usage =
  "usage: bun bench/npc.ts [--policies N] [--pods N] [--applies N] [--time S] [--quiet PCT] [--json]\n" +
  "  --policies N  standing policies (default 100)\n" +
  "  --pods N      pods that exist only as API objects (default 1000)\n" +
  "  --applies N   policies applied and timed (default 10)\n" +
  "  --time S      seconds per throughput and connection-rate measurement (default 5)\n" +
  "  --quiet PCT   wait until the CPUs were PCT % idle over 3 s before each measurement (default 90; 0: no wait)\n" +
  "  --json        print only the JSON result line";

const fail = failer("npc");

function parseArgs(argv: string[]): Opts {
  const o: Opts = { policies: 100, pods: 1000, applies: 10, time: 5, json: false, ...QUIET_DEFAULTS };
  parseFlags(argv, fail, usage, (f) => {
    if (f.flag === "--json") o.json = true;
    else if (f.flag === "--policies") o.policies = f.int(2, 1000);
    else if (f.flag === "--pods") o.pods = f.int(0, 10_000);
    else if (f.flag === "--applies") o.applies = f.int(1, 100);
    else if (f.flag === "--time") o.time = f.int(1, 60);
    else return quietFlag(f, o);
    return true;
  });
  return o;
}

type Traffic = { gbps: number; connPerS: number; connFailed: number };

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  requireRoot(fail);
  requireBuild(fail);
  handleSignals("npc");
  const log = stderrLog(o.json);
  const name = labName("bn");
  const tmp = mkdtempSync(join(tmpdir(), `bench-npc-${name}-`));
  const cleanup = async () => {
    const problems: string[] = [];
    await endTracked();
    await downLab(name, tools, problems);
    removeTmp(tmp, problems);
    return problems;
  };
  try {
    log(`bench/npc: lab ${name}: 3 nodes`);
    const s = await labUp(name, 3, 0, tools);
    const api = new LabApi(s.controlPlane!.url);
    await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
    const node = (i: number) => findNode(mustReadLab(name), `n${i}`).name;
    const bench = { role: "bench" };
    await createPods(mustReadLab(name), [
      { name: "server", namespace: NS, node: node(1), labels: bench, ports: [] },
      { name: "client", namespace: NS, node: node(2), labels: { role: "client" }, ports: [] },
      ...[1, 2, 3].map((i) => ({ name: `target-${i}`, namespace: NS, node: node(i), labels: bench, ports: [] })),
    ]);
    const lab = mustReadLab(name);
    const pod = (p: string) => lab.pods.find((x) => x.namespace === NS && x.name === p)!;
    const [server, client] = [pod("server"), pod("client")];
    const traffic = async (label: string): Promise<Traffic> => {
      await quiet(o, log);
      const gbps = await iperf(server.netns, client.netns, server.ip, o.time);
      await quiet(o, log);
      const conn = await connectionRate(tmp, server.netns, client.netns, server.ip, o.time);
      log(`  ${label}: ${gbps.toFixed(2)} Gbit/s, ${conn.perSecond.toFixed(0)} connections/s`);
      return { gbps, connPerS: conn.perSecond, connFailed: conn.failed };
    };

    log("(b) traffic with no policy");
    const before = await traffic("no policies");
    log(`placing ${o.pods} API-only pods and ${o.policies} policies`);
    await createGhostPods(api, o.pods, Math.max(1, Math.ceil(o.pods / 10)));
    await createStandingPolicies(api, o.policies);
    const kernels = [1, 2, 3].map((i) => ({
      netns: netnsPath(findNode(lab, `n${i}`).netns),
      chain: `ingress/${NS}/target-${i}`,
    }));
    await waitInKernels(kernels, (c) => c.includes(`${NS}/zz-allow-client ingress[0]`), performance.now(), 60_000);
    await checkpoint();

    log(`(a) ${o.applies} policies applied, each timed to every node's kernel`);
    const applies = await timeApplies(api, o, kernels, log);
    log("(b) traffic with the policies");
    const during = await traffic(`${o.policies} policies`);
    const rss = lab.nodes.map((n) => ({ node: n.name, mib: rssMiB(n.npcPid ?? 0) }));
    await deleteStandingPolicies(api, o.policies);
    await waitInKernels(kernels, (c) => !c.includes(`${NS}/zz-allow-client`), performance.now(), 60_000);
    const after = await traffic("no policies again");

    printReport(o, lab, applies, before, during, after, rss);
    const problems = await cleanup();
    for (const p of problems) process.stderr.write(`bench/npc: WARNING (cleanup): ${p}\n`);
    return problems.length ? 3 : 0;
  } catch (e) {
    return abort("npc", e, cleanup);
  }
}

async function quiet(o: Opts, log: (m: string) => void): Promise<void> {
  if (o.quiet > 0) await waitQuiet(o.quiet, o.quietSeconds, o.quietMax, log);
}

/** Each apply: POST, poll every node's kernel for a rule naming it; then DELETE and wait until it is gone. */
async function timeApplies(
  api: LabApi,
  o: Opts,
  kernels: { netns: string; chain: string }[],
  log: (m: string) => void,
): Promise<{ perNode: number[]; slowest: number }[]> {
  const out: { perNode: number[]; slowest: number }[] = [];
  for (let k = 0; k < o.applies; k++) {
    await quiet(o, log);
    const policy = `measured-${k}`;
    const mark = `${NS}/${policy} ingress[0]`;
    const t0 = performance.now();
    await api.create(`/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`, measuredPolicy(policy, `g${k}`));
    const perNode = await waitInKernels(kernels, (c) => c.includes(mark), t0);
    out.push({ perNode, slowest: Math.max(...perNode) });
    log(`  apply ${k + 1}: ${perNode.map((x) => x.toFixed(0)).join(" / ")} ms (n1 / n2 / n3)`);
    await api.delete(policyPath(policy));
    await waitInKernels(kernels, (c) => !c.includes(mark), performance.now());
  }
  return out;
}

function printReport(
  o: Opts,
  lab: LabState,
  applies: { perNode: number[]; slowest: number }[],
  before: Traffic,
  during: Traffic,
  after: Traffic,
  rss: { node: string; mib: number }[],
): void {
  const applyMs = median(applies.map((a) => a.slowest));
  const baseGbps = (before.gbps + after.gbps) / 2;
  const baseConn = (before.connPerS + after.connPerS) / 2;
  const throughput = during.gbps / baseGbps;
  const connections = during.connPerS / baseConn;
  const maxRss = Math.max(...rss.map((r) => r.mib));
  const ok = (pass: boolean) => (pass ? "ok" : "MISSED");
  if (!o.json) {
    const rows = [
      [
        "(a) apply -> every node's kernel, median",
        `${applyMs.toFixed(0)} ms`,
        `<= ${APPLY_TARGET_MS} ms`,
        ok(applyMs <= APPLY_TARGET_MS),
      ],
      [
        "    fastest / slowest apply",
        `${Math.min(...applies.map((a) => a.slowest)).toFixed(0)} / ${Math.max(...applies.map((a) => a.slowest)).toFixed(0)} ms`,
        "",
        "",
      ],
      [
        "(b) TCP throughput, policies / none",
        `${during.gbps.toFixed(2)} / ${baseGbps.toFixed(2)} Gbit/s = ${throughput.toFixed(3)}`,
        `>= ${THROUGHPUT_TARGET}`,
        ok(throughput >= THROUGHPUT_TARGET),
      ],
      [
        "    new connections/s, policies / none",
        `${during.connPerS.toFixed(0)} / ${baseConn.toFixed(0)} = ${connections.toFixed(3)}`,
        `>= ${CONN_TARGET}`,
        ok(connections >= CONN_TARGET),
      ],
      ["(c) weave npc RSS, per node", `${rss.map((r) => r.mib.toFixed(1)).join(" / ")} MiB`, "", ""],
    ];
    const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)) + 2);
    console.log(`\nNetworkPolicy on lab ${lab.name}: ${o.policies} policies, ${o.pods} API-only pods, 3 nodes\n`);
    for (const r of rows) console.log(`${r[0]!.padEnd(w[0]!)}${r[1]!.padEnd(w[1]!)}${r[2]!.padEnd(w[2]!)}${r[3]}`);
    console.log("");
  }
  printResult({
    bench: "npc",
    policies: o.policies,
    pods: o.pods,
    applyMedianMs: r1(applyMs),
    applyMs: applies.map((a) => r1(a.slowest)),
    applyPerNodeMs: applies.map((a) => a.perNode.map(r1)),
    throughputGbps: { none: [r2(before.gbps), r2(after.gbps)], policies: r2(during.gbps), ratio: r3(throughput) },
    connectionsPerS: {
      none: [Math.round(before.connPerS), Math.round(after.connPerS)],
      policies: Math.round(during.connPerS),
      ratio: r3(connections),
    },
    connectionFailures: before.connFailed + during.connFailed + after.connFailed,
    npcRssMiB: Object.fromEntries(rss.map((r) => [r.node, r1(r.mib)])),
    npcRssMaxMiB: r1(maxRss),
    targets: { applyMs: APPLY_TARGET_MS, throughput: THROUGHPUT_TARGET, connections: CONN_TARGET },
  });
}

main().then(
  (code) => process.exit(interrupted() ? 130 : code),
  (e) => {
    process.stderr.write(`bench/npc: ${(e as Error)?.stack ?? e}\n`);
    process.exit(1);
  },
);
