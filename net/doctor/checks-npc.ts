/**
 * Checks of NetworkPolicy enforcement on each node:
 *
 *   npc        its `weave npc` runs and has synced (GET /status on :6781 answers 200);
 *   npc-drift  the kernel's table inet weave-npc is what the API's policies, pods and
 *              namespaces compile to for this node: the compiler and the diff are run
 *              here again on the state doctor read from the API (the controller's own
 *              computation, not a digest it reports), so a table edited by hand, or one
 *              a controller that is down left behind while policies changed, shows as
 *              the changes that would put it right;
 *   npc-drops  the connections it dropped lately, with the reasons it logged, grouped by
 *              source, destination, port and reason: a warning listing the top few,
 *              never a failure (dropping is what policies are for).
 *
 * Pure: compile and diff are the engine's own pure functions (net/policy/).
 */
import { compile } from "../policy/compile.ts";
import { diffTables } from "../policy/nft-diff.ts";
import type { NftTable } from "../policy/nft-model.ts";
import type { PolicyView } from "../policy/state.ts";
import type { ClusterFacts } from "./checks-cluster.ts";
import { LOG_WINDOW_MS } from "./checks-agent.ts";
import { type DropGroup, groupDrops, parseDropLines } from "./parse-npc.ts";
import { list, localNodes, plural, result } from "./result.ts";
import type { CheckResult, Facts, NodeFacts } from "./types.ts";

/** How many drop groups a warning lists. */
const TOP_DROPS = 3;

const startHint = (f: Facts, node: string) => f.hints.startNpc?.(node) ?? `start weave npc on ${node}`;
const logHint = (f: Facts, node: string) => f.hints.npcLogs?.(node) ?? "its log";

export function checkNpc(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    const c = n.npc;
    if (!c) continue;
    const pid = c.pid ? ` (pid ${c.pid})` : "";
    const logs = logHint(f, n.name);
    if (c.running === false) {
      const gone = c.pid ? `: pid ${c.pid} is gone` : "";
      const kept = c.table ? "; the kernel keeps its last rules, but no change of policy or pod reaches it" : "";
      out.push(
        result(
          "npc",
          "fail",
          n.name,
          `weave npc is not running${gone}${kept}`,
          `${startHint(f, n.name)}; why it stopped: ${logs}`,
        ),
      );
    } else if (c.error) {
      const evidence = `weave npc${pid} does not answer on :6781/status: ${c.error}`;
      out.push(result("npc", "fail", n.name, evidence, `${startHint(f, n.name)}; its log: ${logs}`));
    } else if (!c.synced) {
      const evidence = `weave npc${pid} runs but has not synced: ${c.statusText ?? "no reason given"}`;
      const fix = `it needs the API (list and watch of NetworkPolicies, Pods, Namespaces) and nft: read ${logs}`;
      out.push(result("npc", "fail", n.name, evidence, fix));
    } else out.push(result("npc", "pass", n.name, `weave npc${pid} running and synced`));
  }
  return out;
}

/** The commands that would turn `table` into what `view` compiles to for `node`; [] when it matches. */
export function npcDrift(view: PolicyView, node: string, table: NftTable | null): string[] {
  const kernel = table ?? undefined;
  const desired = compile({ state: view.state, node, kernel });
  return [...diffTables(kernel, desired).commands];
}

export function checkNpcDrift(f: Facts): CheckResult[] {
  const p = f.policy;
  const nodes = localNodes(f).filter((n) => n.npc?.table !== undefined || n.npc?.tableError);
  if (!p || !nodes.length) return [];
  if (!p.view) {
    const evidence = `not compared: the policies could not be read from ${p.source}: ${p.error ?? "?"}`;
    return [result("npc-drift", "warn", undefined, evidence, "give doctor the cluster's kubeconfig (--kubeconfig)")];
  }
  return nodes.map((n) => driftOf(f, p.view!, n));
}

function driftOf(f: Facts, view: PolicyView, n: NodeFacts): CheckResult {
  const c = n.npc!;
  if (c.tableError)
    return result(
      "npc-drift",
      "warn",
      n.name,
      `cannot read table inet weave-npc: ${c.tableError}`,
      "run doctor as root",
    );
  const changes = npcDrift(view, n.name, c.table ?? null);
  const count = view.state.policies.length;
  const policies = `${count} ${count === 1 ? "policy" : "policies"}`;
  if (!changes.length) {
    const chains = [...c.table!.chains.keys()].filter((x) => /^(ingress|egress)\//.test(x)).length;
    const evidence = `table inet weave-npc is what ${policies} compile to for this node (${plural(chains, "pod chain")}; recompiled from the API's state)`;
    return result("npc-drift", "pass", n.name, evidence);
  }
  const restart = startHint(f, n.name);
  const fix =
    `restart weave npc (its first sync replaces the table in one transaction): ${restart}; ` +
    `if the drift comes back, something else edits the table: ${f.hints.onNode(n.name)}nft -a list table inet weave-npc`;
  if (c.table === null) {
    const evidence = `the kernel has no table inet weave-npc, so no policy is enforced here (${policies} in the API)`;
    return result("npc-drift", "fail", n.name, evidence, fix);
  }
  const shown = changes.slice(0, 3).map((x) => (x.length > 110 ? `${x.slice(0, 107)}...` : x));
  const evidence =
    `table inet weave-npc differs from what ${policies} compile to for this node ` +
    `(recompiled from the API's state): ${plural(changes.length, "command")} would put it right: ${shown.join("; ")}`;
  return result("npc-drift", "fail", n.name, evidence, fix);
}

export function checkNpcDrops(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    const c = n.npc;
    if (c?.log && !c.log.error) out.push(dropsFromLog(f, n.name, c.log.lines));
    else if (c?.blocked) out.push(dropsFromCounters(n.name, c.blocked));
  }
  return out;
}

/** The warning (or pass) of one node's drop log. */
export function dropsFromLog(f: { now: number }, node: string, lines: string[]): CheckResult {
  const { drops, heldBack } = parseDropLines(lines, f.now - LOG_WINDOW_MS);
  const minutes = LOG_WINDOW_MS / 60_000;
  if (!drops.length && !heldBack)
    return result("npc-drops", "pass", node, `no connection dropped in the last ${minutes} minutes`);
  const groups = groupDrops(drops);
  const top = groups.slice(0, TOP_DROPS).map(groupText);
  const more = heldBack ? ` (+${heldBack} not logged one by one: the log's rate limit)` : "";
  const evidence = `${plural(drops.length, "connection")} dropped in the last ${minutes} minutes${more}: ${top.join("; ")}`;
  const first = groups[0];
  const explainHint = first
    ? `weave policy explain --from ${first.from} --to ${first.to} --port ${first.port}`
    : "weave policy explain";
  const fix =
    "dropping is what policies are for; if one of these should get through, see which policies isolate it and what " +
    `their rules allow with ${explainHint}, then add a rule that allows it`;
  return result("npc-drops", "warn", node, evidence, fix);
}

function groupText(g: DropGroup): string {
  const times = g.count > 1 ? ` x${g.count}` : "";
  return `${g.from} -> ${g.to} ${g.port}${times} (${g.reason})`;
}

function dropsFromCounters(node: string, blocked: Record<string, number>): CheckResult {
  const byCount = Object.entries(blocked)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);
  if (!byCount.length) return result("npc-drops", "pass", node, "no connection dropped since weave npc started");
  const total = byCount.reduce((s, [, n]) => s + n, 0);
  const top = byCount.slice(0, TOP_DROPS).map(([k, n]) => `${k.split(" ").reverse().join("/")} x${n}`);
  const evidence = `${plural(total, "connection")} dropped since weave npc started, by port: ${list(top)}`;
  const fix =
    "which pods and why: the weave-npc container's log (kubectl -n kube-system logs -c weave-npc <weave-net pod>) " +
    "has a line per drop; weave policy explain --from NS/POD --to NS/POD --port PORT/PROTO gives the reasons";
  return result("npc-drops", "warn", node, evidence, fix);
}

/** Cluster mode: the weave-npc container of each node's agent pod, and the drops in its log. */
export function checkClusterNpc(f: ClusterFacts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of f.nodes) {
    const node = n.metadata?.name ?? "?";
    const pod = f.agentPods
      .filter((p) => p.spec?.nodeName === node && !p.metadata?.deletionTimestamp)
      .sort((a, b) => +new Date(b.metadata?.creationTimestamp ?? 0) - +new Date(a.metadata?.creationTimestamp ?? 0))[0];
    if (!pod) continue;
    const name = pod.metadata?.name ?? "?";
    const logs = `kubectl -n kube-system logs -c weave-npc ${name}`;
    const status = pod.status?.containerStatuses?.find((c) => c.name === "weave-npc");
    const inSpec = pod.spec?.containers.some((c) => c.name === "weave-npc");
    if (!inSpec && !status) {
      const evidence = `${name} runs no weave-npc container: NetworkPolicies are not enforced on this node`;
      out.push(
        result("npc", "warn", node, evidence, "install this weave again (its DaemonSet runs weave npc): weave install"),
      );
      continue;
    }
    if (!status?.ready) {
      const state = status?.state?.waiting?.reason ?? (status?.state?.terminated ? "terminated" : "not ready");
      const evidence = `the weave-npc container of ${name} is ${state}: not synced, so policy changes do not reach this node`;
      out.push(result("npc", "fail", node, evidence, `read its log: ${logs} (--previous after a restart)`));
    } else {
      const restarts = status.restartCount ? `, restarted ${plural(status.restartCount, "time")}` : "";
      out.push(result("npc", "pass", node, `the weave-npc container of ${name} is ready (synced)${restarts}`));
    }
    const log = f.npcLogs?.[node];
    if (log && !log.error) out.push(dropsFromLog(f, node, log.lines));
  }
  return out;
}
