/**
 * weave npc's /metrics (:6781): weave-npc's weavenpc_blocked_connections_total{protocol,
 * dport} under its name, and ours: syncs of the kernel's rules and how long they take,
 * their failures, what the last good sync enforces (policies, this node's pods, chains,
 * rules), and the dropped-connection log's losses.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { NpcController } from "../npc/controller.ts";
import { VERSION } from "../version.ts";
import { setTotals } from "./exposition.ts";

/** Seconds: a sync of a small cluster takes a few ms (one `nft -f`), a big one ~100s of ms. */
export const SYNC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Defines weave npc's metrics in `registers` (one registry: Exposition.define). */
export function registerNpcMetrics(registers: Registry[], c: NpcController, dropLog?: { lost: number }): void {
  new Counter({
    name: "weavenpc_blocked_connections_total",
    help: "Connections blocked by a NetworkPolicy, by protocol and destination port.",
    labelNames: ["protocol", "dport"],
    registers,
    collect() {
      const rows = [...c.reporter.blocked].map(([key, n]): [{ protocol: string; dport: string }, number] => {
        const [protocol = "", dport = ""] = key.split(" ");
        return [{ protocol, dport }, n];
      });
      setTotals(this, rows);
    },
  });
  new Counter({
    name: "weavenpc_syncs_total",
    help: "Syncs of the kernel's rules that worked.",
    registers,
    collect() {
      setTotals(this, [[{}, c.syncs]]);
    },
  });
  new Counter({
    name: "weavenpc_policy_enforcement_errors_total",
    help: "Syncs of the kernel's rules that failed (the kernel keeps its rules; retried).",
    registers,
    collect() {
      setTotals(this, [[{}, c.errors]]);
    },
  });
  const duration = new Histogram({
    name: "weavenpc_sync_duration_seconds",
    help: "How long a sync took: compile, diff against the kernel, one nft transaction.",
    labelNames: ["result"],
    buckets: SYNC_BUCKETS,
    registers,
  });
  duration.zero({ result: "ok" });
  c.onSync((ms, ok) => duration.observe({ result: ok ? "ok" : "error" }, ms / 1000));
  new Gauge({
    name: "weavenpc_synced",
    help: "1 once the kernel holds what the first full list of policies, pods and namespaces asked for.",
    registers,
    collect() {
      this.set(c.synced ? 1 : 0);
    },
  });
  new Gauge({
    name: "weavenpc_policies",
    help: "NetworkPolicies in the cluster, as of the last good sync.",
    registers,
    collect() {
      this.set(c.enforced.policies);
    },
  });
  new Gauge({
    name: "weavenpc_local_pods",
    help: "Pods on this node, as of the last good sync.",
    registers,
    collect() {
      this.set(c.enforced.localPods);
    },
  });
  new Gauge({
    name: "weavenpc_chains",
    help: "Chains in table inet weave-npc after the last good sync.",
    registers,
    collect() {
      this.set(c.enforced.chains);
    },
  });
  new Gauge({
    name: "weavenpc_rules",
    help: "Rules in table inet weave-npc after the last good sync.",
    registers,
    collect() {
      this.set(c.enforced.rules);
    },
  });
  new Counter({
    name: "weavenpc_drop_log_lost_total",
    help: "Dropped-connection log messages the kernel could not queue.",
    registers,
    collect() {
      setTotals(this, [[{}, dropLog?.lost ?? 0]]);
    },
  });
  new Gauge({
    name: "weavenpc_build_info",
    help: "weave npc's version and the Bun runtime, as labels (value 1).",
    labelNames: ["version", "bun"],
    registers,
  }).set({ version: VERSION, bun: Bun.version }, 1);
}
