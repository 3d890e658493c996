/**
 * Every check, in the order they are shown, evaluated over gathered facts; the
 * summary and exit code. Pure: the same facts give the same verdicts.
 */
import {
  checkAgentLogs,
  checkAgents,
  checkMeshConnections,
  checkMeshPeers,
  checkMeshProtocol,
} from "./checks-agent.ts";
import { checkCniConfig } from "./checks-cni.ts";
import { checkTunnels } from "./checks-tunnels.ts";
import { checkDataPath } from "./checks-datapath.ts";
import { checkNpc, checkNpcDrift, checkNpcDrops } from "./checks-npc.ts";
import { checkIpamOrphans, checkIpamReady, checkIpamSpace } from "./checks-ipam.ts";
import { checkDevices, checkMtu, checkPods, checkRangeOverlap } from "./checks-node.ts";
import {
  checkCrossNodePing,
  checkFullSizePing,
  checkSameNodePing,
  checkTcp6783,
  checkUdp6784,
} from "./checks-reach.ts";
import type { CheckResult, Facts } from "./types.ts";

/** The checks, in display order, with what each looks at (docs/troubleshooting.md has the fixes). */
export const CATALOG: { name: string; what: string }[] = [
  { name: "daemonset", what: "(cluster) the DaemonSet kube-system/weave-net exists and has rolled out" },
  { name: "agent-pods", what: "(cluster) one agent pod on every node, Ready, all containers ready" },
  { name: "node-ready", what: "(cluster) every node is Ready" },
  { name: "node-network", what: "(cluster) no node has NetworkUnavailable=True" },
  { name: "agent", what: "the agent runs and is ready on every node" },
  { name: "mesh-peers", what: "every peer reaches every other (directly or routed)" },
  { name: "mesh-connections", what: "no failed mesh connections" },
  {
    name: "mesh-protocol",
    what: "every peer speaks an overlapping mesh protocol version and the same encryption setting",
  },
  { name: "ipam-ready", what: "IPAM ready on every node, no ring conflict" },
  { name: "ipam-space", what: "the pod range is not exhausted" },
  { name: "ipam-orphans", what: "no address space held by a peer that is gone" },
  { name: "pod-address", what: "every pod has an address in the range, held by its node's agent" },
  { name: "pod-route", what: "every pod's default route goes via its node's bridge" },
  { name: "devices", what: "the bridge weave and vxlan-6784 exist and are up" },
  { name: "mtu", what: "bridge, VXLAN, pods agree, fit the underlay minus 50, and match other nodes" },
  { name: "ping-same-node", what: "pods on one node reach each other, and the node reaches them" },
  { name: "ping-cross-node", what: "pods reach pods on every other node" },
  { name: "ping-full-size", what: "a don't-fragment ping at the full pod MTU crosses between nodes" },
  { name: "tcp-6783", what: "the mesh port is reachable between nodes, no firewall rule drops it" },
  { name: "udp-6784", what: "VXLAN gets through between nodes, no firewall rule drops it" },
  {
    name: "tunnels",
    what: "with encryption: every pair of peers has a live WireGuard tunnel (a handshake under 3 minutes old)",
  },
  {
    name: "datapath",
    what: "every pair of nodes on the fast datapath (kernel VXLAN, or WireGuard); the sleeve (userspace, UDP 6783) or a route through another node warns",
  },
  { name: "range-overlap", what: "the pod range overlaps no node address, route or service range" },
  { name: "cni-config", what: "exactly one network's CNI config on each node, and it is weave's" },
  { name: "agent-logs", what: "no recent error lines in the agents' logs, no datapath errors" },
  { name: "npc", what: "weave npc (the NetworkPolicy controller) runs and has synced on every node" },
  { name: "npc-drift", what: "the kernel's table inet weave-npc is what the policies compile to for the node" },
  { name: "npc-drops", what: "connections dropped by policies lately, with their reasons (warn, never fail)" },
  { name: "in-pod-probes", what: "(cluster) pings between test pods, the kubernetes Service and DNS from a pod" },
];

const CHECKS: ((f: Facts) => CheckResult[])[] = [
  checkAgents,
  checkMeshPeers,
  checkMeshConnections,
  checkMeshProtocol,
  checkIpamReady,
  checkIpamSpace,
  checkIpamOrphans,
  checkPods,
  checkDevices,
  checkMtu,
  checkSameNodePing,
  checkCrossNodePing,
  checkFullSizePing,
  checkTcp6783,
  checkUdp6784,
  checkTunnels,
  checkDataPath,
  checkRangeOverlap,
  checkCniConfig,
  checkAgentLogs,
  checkNpc,
  checkNpcDrift,
  checkNpcDrops,
];

const order = (name: string) => {
  const i = CATALOG.findIndex((c) => c.name === name);
  return i < 0 ? CATALOG.length : i;
};

/** Every result, grouped by check in catalog order (stable within a check). */
export function evaluate(f: Facts): CheckResult[] {
  return sortResults(CHECKS.flatMap((c) => c(f)));
}

export function sortResults(rs: CheckResult[]): CheckResult[] {
  return rs
    .map((r, i) => ({ r, i }))
    .sort((a, b) => order(a.r.name) - order(b.r.name) || a.i - b.i)
    .map((x) => x.r);
}

export type Summary = { checks: number; failed: string[]; warned: string[]; line: string; exitCode: 0 | 1 };

/** A check fails when any of its results fails; warns when any warns and none fails. */
export function summarize(rs: CheckResult[]): Summary {
  const names = [...new Set(rs.map((r) => r.name))];
  const failed = names.filter((n) => rs.some((r) => r.name === n && r.status === "fail"));
  const warned = names.filter((n) => !failed.includes(n) && rs.some((r) => r.name === n && r.status === "warn"));
  const where = [...new Set(rs.filter((r) => r.status === "fail" && r.node).map((r) => r.node!))];
  const warnText = warned.length
    ? `${failed.length ? ";" : ","} ${warned.length} ${failed.length ? "more " : ""}with warnings`
    : "";
  const line = failed.length
    ? `❌ ${failed.length} of ${names.length} checks failed${where.length ? ` (on ${where.join(", ")})` : ""}: ${failed.join(", ")}${warnText}`
    : `✅ ${names.length} checks passed${warnText}`;
  return { checks: names.length, failed, warned, line, exitCode: failed.length ? 1 : 0 };
}
