/**
 * The lab runs no kube-proxy (its Service ClusterIPs lead nowhere), so a case that probes
 * through Service addresses plays kube-proxy's nftables mode on the client's node itself:
 * a table `ip kube-proxy-test` shaped like kube-proxy's `ip kube-proxy` (a `service-ips`
 * verdict map keyed by address . protocol . port in a `services` chain, jumped to from a
 * nat chain at prerouting priority dstnat; a chain per service port choosing an endpoint
 * with numgen; a chain per endpoint doing the `dnat`). Masquerading for hairpin is left
 * out: a pod reaching itself is a loopback cell, ignored. The table is made for one step
 * and deleted after it, by name, in every node where it was made.
 */
import { inNs } from "../../../net/lab/plugin.ts";
import type { Protocol } from "./model.ts";

export const DNAT_TABLE = "kube-proxy-test";

export type ServicePort = { service: string; clusterIp: string; port: number; protocol: Protocol; endpoint: string };

/** The nft script for these service ports (one endpoint each, as the model's Services have). */
export function kubeProxyScript(ports: ServicePort[]): string {
  const chain = (p: ServicePort) => `${p.service}-${p.protocol.toLowerCase()}-${p.port}`;
  const lines = [
    `add table ip ${DNAT_TABLE}`,
    `delete table ip ${DNAT_TABLE}`,
    `table ip ${DNAT_TABLE} {`,
    "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }",
    "  chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }",
    "  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }",
    ...ports.flatMap((p) => [
      `  chain endpoint-${chain(p)} { meta l4proto ${p.protocol.toLowerCase()} dnat to ${p.endpoint}:${p.port}; }`,
      `  chain service-${chain(p)} { numgen random mod 1 vmap { 0 : goto endpoint-${chain(p)} }; }`,
    ]),
    "}",
    ...ports.map(
      (p) =>
        `add element ip ${DNAT_TABLE} service-ips { ${p.clusterIp} . ${p.protocol.toLowerCase()} . ${p.port} : goto service-${chain(p)} }`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}

/** Install the table in each node namespace (by name); returns the nodes where it now exists. */
export function installServiceDnat(nodes: string[], ports: ServicePort[]): string[] {
  const script = kubeProxyScript(ports);
  const made: string[] = [];
  for (const node of nodes) {
    const r = inNs(node, ["nft", "-f", "-"], { stdin: script });
    if (r.code !== 0) {
      removeServiceDnat(made);
      throw new Error(`nft in ${node}: ${r.stderr.trim()}`);
    }
    made.push(node);
  }
  return made;
}

export function removeServiceDnat(nodes: string[]): void {
  for (const node of nodes) inNs(node, ["nft", "delete", "table", "ip", DNAT_TABLE]);
}
