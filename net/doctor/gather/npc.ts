/**
 * Facts about `weave npc` for doctor's npc checks (checks-npc.ts).
 *
 *   lab    each node's controller by its pid in lab.json, its GET /status on :6781 from
 *          inside the node's namespace, the kernel's table there
 *          (`nft -j list table inet weave-npc`), and the tail of <dataDir>/npc.log;
 *          the policies, pods and namespaces from the lab's API server.
 *   node   the controller at 127.0.0.1:6781 (/status, /metrics), the table of this
 *          namespace, and the API's state when a kubeconfig is at hand (--kubeconfig,
 *          $KUBECONFIG or in-cluster).
 *
 * The drift check compares the kernel with a compilation of the API's state. A change
 * made a moment ago may not have reached the kernel yet (the controller debounces by
 * 50 ms and applies in a few more), so when any node differs, tables and state are read
 * once more after 1.5 s and the second reading is what doctor judges.
 */
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { netnsPath } from "../../host/netns.ts";
import { pidAlive } from "../../host/process.ts";
import { loadKubeConfig } from "../../k8s/client.ts";
import { readPolicyView } from "../../k8s/policy-state.ts";
import type { LabState } from "../../lab/state.ts";
import { TABLE } from "../../policy/names.ts";
import { tableFromJson } from "../../policy/nft-json.ts";
import { npcDrift } from "../checks-npc.ts";
import { parseHttp } from "../parse.ts";
import { parseBlockedMetrics } from "../parse-npc.ts";
import type { Facts, NpcFacts } from "../types.ts";
import { type Exec, localGetInNetns } from "./exec.ts";
import { tailLines } from "./lab.ts";

export const NPC_PORT = 6781;
export const DEFAULT_NPC_URL = `http://127.0.0.1:${NPC_PORT}`;
const SETTLE_MS = 1500;

type Table = Pick<NpcFacts, "table" | "tableError">;

/** The kernel's table in `netns` (undefined: this namespace). */
async function readTable(exec: Exec, netns?: string): Promise<Table> {
  const r = await exec(["nft", "-j", "list", "table", "inet", TABLE], { ...(netns ? { netns } : {}), timeoutMs: 3000 });
  if (r.code === 0) {
    try {
      return { table: tableFromJson(r.stdout, TABLE) };
    } catch (e) {
      return { tableError: `unreadable nft output: ${(e as Error).message}` };
    }
  }
  if (/No such file or directory/.test(r.stderr)) return { table: null };
  return { tableError: r.stderr.trim().split("\n").at(-1) || `nft exited ${r.code}` };
}

async function readView(kc: KubeConfig, source: string): Promise<NonNullable<Facts["policy"]>> {
  try {
    return { source, view: await readPolicyView(kc) };
  } catch (e) {
    return { source, error: (e as Error).message };
  }
}

const drifted = (policy: Facts["policy"], tables: Map<string, Table>) =>
  !!policy?.view &&
  [...tables].some(([node, t]) => t.table !== undefined && npcDrift(policy.view!, node, t.table).length > 0);

/** Every lab node's controller; `policy` from the lab's API server. */
export async function gatherLabNpc(
  s: LabState,
  exec: Exec,
): Promise<{ npc: Map<string, NpcFacts>; policy?: Facts["policy"] }> {
  const nodes = s.nodes.filter((n) => n.npcPid !== undefined);
  const npc = new Map<string, NpcFacts>();
  if (!nodes.length) return { npc };
  const kc = s.kubeconfig ? loadKubeConfig({ kubeconfig: s.kubeconfig }) : undefined;
  const source = s.controlPlane?.url ?? `lab ${s.name}'s API server`;
  const view = () =>
    kc ? readView(kc, source) : Promise.resolve({ source, error: `lab ${s.name} records no kubeconfig` });
  const tables = async () =>
    new Map(await Promise.all(nodes.map(async (n) => [n.name, await readTable(exec, netnsPath(n.netns))] as const)));

  const [statuses, firstTables, firstPolicy] = await Promise.all([
    Promise.all(nodes.map((n) => labStatus(exec, n))),
    tables(),
    view(),
  ]);
  let [kernel, policy] = [firstTables, firstPolicy];
  if (drifted(policy, kernel)) {
    await Bun.sleep(SETTLE_MS);
    [kernel, policy] = await Promise.all([tables(), view()]);
  }
  nodes.forEach((n, i) => {
    const logPath = join(n.dataDir, "npc.log");
    let log: NpcFacts["log"];
    try {
      log = { path: logPath, lines: tailLines(logPath) };
    } catch (e) {
      log = { path: logPath, lines: [], error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
    }
    npc.set(n.name, { ...statuses[i], ...kernel.get(n.name), log });
  });
  return { npc, policy };
}

async function labStatus(exec: Exec, n: LabState["nodes"][number]): Promise<NpcFacts> {
  const pid = n.npcPid ?? 0;
  if (!pidAlive(pid)) return { running: false, pid };
  const r = await localGetInNetns(exec, netnsPath(n.netns), NPC_PORT, "/status");
  const st = r.raw ? parseHttp(r.raw) : undefined;
  if (!st) return { running: true, pid, error: r.error ?? "not an HTTP answer" };
  return { running: true, pid, synced: st.status === 200, statusText: st.body.trim().split("\n")[0] };
}

async function get(url: string): Promise<{ status: number; body: string } | { error: string }> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { error: (e as { code?: string }).code ?? (e as Error).name };
  }
}

/** This node's controller at `url`, its table here, and the API's state when a kubeconfig loads. */
export async function gatherNodeNpc(
  exec: Exec,
  node: string,
  o: { url: string; kubeconfig?: string },
): Promise<{ npc: NpcFacts; policy?: Facts["policy"] }> {
  let kc: KubeConfig | undefined;
  let noApi = "";
  try {
    kc = loadKubeConfig({ kubeconfig: o.kubeconfig });
  } catch (e) {
    noApi = (e as Error).message;
  }
  const source = kc?.getCurrentCluster()?.server ?? "the API (no kubeconfig)";
  const view = () => (kc ? readView(kc, source) : Promise.resolve({ source, error: noApi }));
  const [status, metrics, firstTable, firstPolicy] = await Promise.all([
    get(`${o.url}/status`),
    get(`${o.url}/metrics`),
    readTable(exec),
    view(),
  ]);
  let [table, policy] = [firstTable, firstPolicy];
  if (drifted(policy, new Map([[node, table]]))) {
    await Bun.sleep(SETTLE_MS);
    [table, policy] = await Promise.all([readTable(exec), view()]);
  }
  const blocked = "body" in metrics && metrics.status === 200 ? { blocked: parseBlockedMetrics(metrics.body) } : {};
  const answer: NpcFacts =
    "error" in status
      ? { error: `${o.url}: ${status.error}` }
      : { running: true, synced: status.status === 200, statusText: status.body.trim().split("\n")[0] };
  return { npc: { ...answer, ...table, ...blocked }, policy };
}
