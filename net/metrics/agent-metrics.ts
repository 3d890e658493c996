/**
 * The agent's /metrics (WEAVE_METRICS_ADDR, :6782). Weave Net's names and labels where
 * it had them, so its users' dashboards and alerts keep working:
 *   weave_connections{state,type,encryption}  connections by state; type "fastdp" or "sleeve"
 *                                             once established, else "unknown"; encryption "yes" or ""
 *   weave_connection_terminations_total       established connections that ended
 *   weave_ips{state="local-used"}             addresses held here (pods and the bridge)
 *   weave_max_ips                             addresses in the whole range
 *   weave_ipam_unreachable_count              peers owning space that we cannot reach
 *   weave_ipam_pending_allocates              allocations waiting for space from peers
 *   weave_ipam_pending_claims                 removed peers' space waiting for its heir
 * and ours where Weave had none (names in weave_*, units in the name, counters _total),
 * among them weave_datapath_peers{path} (fastdp, sleeve, routed) and the sleeve's
 * weave_sleeve_frames_total{direction}, weave_sleeve_bytes_total{direction} and
 * weave_sleeve_dropped_total{reason}.
 * Gauges and the running totals are read from the agent at each scrape (collect); only
 * the CNI calls are observed as they finish.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Agent } from "../agent/agent.ts";
import { PROTOCOL_MAX } from "../mesh/frame.ts";
import { VERSION } from "../version.ts";
import { setTotals } from "./exposition.ts";

/** Seconds: the plugin's calls take ~1-20 ms when warm; waiting for space can take SPACE_WAIT_MS. */
export const CNI_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const CONNECTION_STATES = ["established", "pending", "retrying", "failed"] as const;

/** Defines the agent's metrics in `registers` (one registry: Exposition.define). */
export function registerAgentMetrics(registers: Registry[], agent: Agent): void {
  const router = () => agent.router;

  new Gauge({
    name: "weave_connections",
    help: "Number of peer-to-peer connections.",
    labelNames: ["state", "type", "encryption"],
    registers,
    collect() {
      this.reset();
      const r = router();
      if (!r) return;
      const counts = new Map<string, { state: string; type: string; encryption: string; n: number }>();
      const enc = r.encrypted ? "yes" : "";
      for (const state of CONNECTION_STATES) {
        const type = state === "established" ? "fastdp" : "unknown";
        counts.set(`${state}/${type}/${enc}`, { state, type, encryption: enc, n: 0 });
      }
      for (const c of r.connections()) {
        const type = c.state === "established" && c.name ? agent.dataPath(c.name).path : "unknown";
        const encryption = c.encrypted ? "yes" : "";
        const key = `${c.state}/${type}/${encryption}`;
        const row = counts.get(key) ?? { state: c.state, type, encryption, n: 0 };
        row.n++;
        counts.set(key, row);
      }
      for (const { n, ...labels } of counts.values()) this.set(labels, n);
    },
  });
  new Counter({
    name: "weave_connection_terminations_total",
    help: "Number of peer-to-peer connections terminated.",
    registers,
    collect() {
      setTotals(this, [[{}, router()?.terminations ?? 0]]);
    },
  });
  new Gauge({
    name: "weave_ips",
    help: "Number of IP addresses.",
    labelNames: ["state"],
    registers,
    collect() {
      this.reset();
      if (agent.allocator) this.set({ state: "local-used" }, agent.allocator.active);
    },
  });
  new Gauge({
    name: "weave_max_ips",
    help: "Size of IP address space used by allocator.",
    registers,
    collect() {
      this.set(agent.allocator?.capacity ?? 0);
    },
  });
  new Gauge({
    name: "weave_ipam_unreachable_count",
    help: "Number of unreachable peers (that own address space).",
    registers,
    collect() {
      this.set(agent.ipamKeeper?.unreachableOwners() ?? 0);
    },
  });
  new Gauge({
    name: "weave_ipam_pending_allocates",
    help: "Number of pending allocates (waiting for address space from peers).",
    registers,
    collect() {
      this.set(agent.ipamKeeper?.pendingAllocates ?? 0);
    },
  });
  new Gauge({
    name: "weave_ipam_pending_claims",
    help: "Number of pending claims (space of removed peers waiting for their heir).",
    registers,
    collect() {
      this.set(agent.ipamKeeper?.pendingClaims ?? 0);
    },
  });

  // --- ours ----------------------------------------------------------------------
  new Gauge({
    name: "weave_ipam_free_ips",
    help: "Free addresses in the space this peer owns.",
    registers,
    collect() {
      this.set(agent.allocator?.free ?? 0);
    },
  });
  new Gauge({
    name: "weave_ipam_waiting",
    help: "1 while IPAM cannot hand out space yet (awaiting consensus, the Node list, or space from peers).",
    registers,
    collect() {
      this.set(agent.ipamKeeper && (agent.ipamWaiting || !agent.bridge) ? 1 : 0);
    },
  });
  new Gauge({
    name: "weave_ready",
    help: "1 when the agent is ready (what GET /status answers 200 to).",
    registers,
    collect() {
      this.set(agent.ready ? 1 : 0);
    },
  });
  new Gauge({
    name: "weave_peers",
    help: "Other peers in the topology, by whether a route reaches them.",
    labelNames: ["state"],
    registers,
    collect() {
      const t = router()?.topology;
      const reach = t?.reachable();
      const others = t?.entries().filter((e) => e.name !== agent.name) ?? [];
      const reachable = others.filter((e) => reach?.has(e.name)).length;
      this.set({ state: "reachable" }, reachable);
      this.set({ state: "unreachable" }, others.length - reachable);
    },
  });
  new Counter({
    name: "weave_gossip_sent_bytes_total",
    help: "Bytes sent to peers over mesh connections (handshakes, heartbeats, topology gossip).",
    registers,
    collect() {
      setTotals(this, [[{}, router()?.bytesSent ?? 0]]);
    },
  });
  new Counter({
    name: "weave_gossip_received_bytes_total",
    help: "Bytes received from peers over mesh connections (handshakes, heartbeats, topology gossip).",
    registers,
    collect() {
      setTotals(this, [[{}, router()?.bytesReceived ?? 0]]);
    },
  });
  new Gauge({
    name: "weave_datapath_entries",
    help: "Entries the agent keeps in the kernel's VXLAN datapath, by table (fdb of vxlan-6784, neighbour of the bridge).",
    labelNames: ["table"],
    registers,
    collect() {
      this.set({ table: "fdb" }, agent.stats.datapathEntries.fdb);
      this.set({ table: "neighbour" }, agent.stats.datapathEntries.neighbour);
    },
  });
  new Counter({
    name: "weave_datapath_changes_total",
    help: "Changes the agent made to the kernel's datapath (device, FDB and neighbour entries).",
    registers,
    collect() {
      setTotals(this, [[{}, agent.stats.datapathChanges]]);
    },
  });
  new Counter({
    name: "weave_reconcile_errors_total",
    help: "Reconcile passes that failed, by part (node: bridge, sysctl, masquerading; datapath).",
    labelNames: ["part"],
    registers,
    collect() {
      const rows = ["node", "datapath"].map((part): [{ part: string }, number] => [
        { part },
        agent.stats.reconcileErrors.get(part) ?? 0,
      ]);
      setTotals(this, rows);
    },
  });
  new Gauge({
    name: "weave_datapath_peers",
    help: "Reachable peers by the path their pods' traffic takes: fastdp (kernel VXLAN), sleeve (userspace, direct) or routed (a neighbour's sleeve).",
    labelNames: ["path"],
    registers,
    collect() {
      const t = router()?.topology;
      const n = { fastdp: 0, sleeve: 0, routed: 0 };
      for (const name of t?.reachable() ?? []) {
        if (name === agent.name) continue;
        const dp = agent.dataPath(name);
        n[dp.path === "fastdp" ? "fastdp" : "via" in dp && dp.via ? "routed" : "sleeve"]++;
      }
      for (const [path, count] of Object.entries(n)) this.set({ path }, count);
    },
  });
  new Counter({
    name: "weave_sleeve_frames_total",
    help: "Ethernet frames the sleeve carried, by direction (tx: to peers, rx: from peers, relayed: for other peers).",
    labelNames: ["direction"],
    registers,
    collect() {
      const s = agent.sleeve?.stats();
      setTotals(this, [
        [{ direction: "tx" }, s?.txFrames ?? 0],
        [{ direction: "rx" }, s?.rxFrames ?? 0],
        [{ direction: "relayed" }, s?.relayed ?? 0],
      ]);
    },
  });
  new Counter({
    name: "weave_sleeve_bytes_total",
    help: "Bytes of Ethernet frames the sleeve carried, by direction.",
    labelNames: ["direction"],
    registers,
    collect() {
      const s = agent.sleeve?.stats();
      setTotals(this, [
        [{ direction: "tx" }, s?.txBytes ?? 0],
        [{ direction: "rx" }, s?.rxBytes ?? 0],
      ]);
    },
  });
  new Counter({
    name: "weave_sleeve_dropped_total",
    help: "Datagrams and frames the sleeve dropped, by reason (unknown-source, bad-frame, auth, replay, no-route, ...).",
    labelNames: ["reason"],
    registers,
    collect() {
      const drops = agent.sleeve?.stats().drops ?? {};
      setTotals(
        this,
        Object.entries(drops).map(([reason, n]): [{ reason: string }, number] => [{ reason }, n]),
      );
    },
  });
  new Gauge({
    name: "weave_build_info",
    help: "The agent's version, the mesh protocol and the Bun runtime, as labels (value 1).",
    labelNames: ["version", "protocol", "bun"],
    registers,
  }).set({ version: VERSION, protocol: String(PROTOCOL_MAX), bun: Bun.version }, 1);

  const ops = new Counter({
    name: "weave_cni_operations_total",
    help: "CNI calls the agent answered, by command and result (ok or error).",
    labelNames: ["command", "result"],
    registers,
  });
  const errors = new Counter({
    name: "weave_cni_errors_total",
    help: "CNI calls that failed, by command and CNI error code.",
    labelNames: ["command", "code"],
    registers,
  });
  const latency = new Histogram({
    name: "weave_cni_operation_duration_seconds",
    help: "How long the agent took to answer a CNI call, by command.",
    labelNames: ["command"],
    buckets: CNI_BUCKETS,
    registers,
  });
  for (const command of ["ADD", "DEL", "CHECK"]) {
    ops.inc({ command, result: "ok" }, 0);
    ops.inc({ command, result: "error" }, 0);
    latency.zero({ command });
  }
  agent.stats.onCni((o) => {
    ops.inc({ command: o.command, result: o.code === undefined ? "ok" : "error" });
    if (o.code !== undefined) errors.inc({ command: o.command, code: String(o.code) });
    latency.observe({ command: o.command }, o.seconds);
  });
}
