/**
 * Fail closed: with encryption on, no VXLAN packet crosses the node's boundary outside
 * WireGuard. One nftables table of our own, `inet weave-wg`, with two rules:
 *
 * - output: a locally made packet to UDP 6784 (the kernel VXLAN device's, after it
 *   encapsulated a pod's frame) that is routed out of any interface but `weave-wg` is
 *   dropped and counted. That is what happens while `weave-wg` is missing (wireguard-go
 *   dead or restarting: its TUN, address and connected route go with it, so the tunnel
 *   address would be routed by the default route, in the clear), or if anything ever
 *   points a VXLAN entry at an underlay address.
 * - input: a packet to UDP 6784 that did not come out of `weave-wg` is dropped and
 *   counted: nobody on the underlay can inject frames into the pod network by sending
 *   plain VXLAN.
 *
 * Only the output and input hooks: pod traffic that the node forwards (a pod talking to
 * some service on UDP 6784) is not the node's VXLAN and is left alone. A peer whose key
 * is not known yet needs no rule: its VXLAN goes into `weave-wg`, where no peer's
 * allowed IPs match it, and wireguard-go drops it. The table is applied before the VXLAN
 * device points at tunnel addresses and stays while the agent runs; an agent stopped for
 * a restart should leave it (removeFailClosed is for turning encryption off).
 * Pure builder + apply, as net/host/nft.ts's masquerade table.
 */
import { VXLAN_PORT } from "../encap/vxlan.ts";
import { WG_NAME } from "../encap/wireguard.ts";

export const WG_NFT_TABLE = "weave-wg";
const OUT_COMMENT = "weave-wg-plain-vxlan-out";
const IN_COMMENT = "weave-wg-plain-vxlan-in";

export type FailClosedSpec = { device?: string; vxlanPort?: number };
export type FailClosedCounters = { droppedOut: number; droppedIn: number };

/** Pure: the nft script that replaces our table with the fail-closed rules. */
export function failClosedScript(s: FailClosedSpec = {}): string {
  const dev = s.device ?? WG_NAME;
  const port = s.vxlanPort ?? VXLAN_PORT;
  return [
    `add table inet ${WG_NFT_TABLE}`,
    `delete table inet ${WG_NFT_TABLE}`,
    `table inet ${WG_NFT_TABLE} {`,
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    `    udp dport ${port} oifname != "${dev}" counter drop comment "${OUT_COMMENT}"`,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    `    udp dport ${port} iifname != "${dev}" counter drop comment "${IN_COMMENT}"`,
    "  }",
    "}",
    "",
  ].join("\n");
}

function nft(netns: string | undefined, args: string[], stdin?: string): { code: number; out: string; err: string } {
  const argv = [...(netns ? ["nsenter", `--net=${netns}`] : []), "nft", ...args];
  const r = Bun.spawnSync(argv, {
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString().trim() };
}

/** Put the table in place, atomically (`nft -f -`); `netns` is a namespace path, or here. */
export function applyFailClosed(s: FailClosedSpec = {}, netns?: string): void {
  const r = nft(netns, ["-f", "-"], failClosedScript(s));
  if (r.code !== 0) throw new Error(`nft (table inet ${WG_NFT_TABLE}): ${r.err}`);
}

/** Is the table there with both rules, for this device? */
export function failClosedInPlace(s: FailClosedSpec = {}, netns?: string): boolean {
  const r = nft(netns, ["list", "table", "inet", WG_NFT_TABLE]);
  if (r.code !== 0) return false;
  const dev = s.device ?? WG_NAME;
  return r.out.includes(OUT_COMMENT) && r.out.includes(IN_COMMENT) && r.out.includes(`"${dev}"`);
}

/** Packets each rule has dropped; undefined when the table is not there. */
export function failClosedCounters(netns?: string): FailClosedCounters | undefined {
  const r = nft(netns, ["-j", "list", "table", "inet", WG_NFT_TABLE]);
  if (r.code !== 0) return undefined;
  const counters: FailClosedCounters = { droppedOut: 0, droppedIn: 0 };
  // nft -j: {"nftables": [{"rule": {"comment": ..., "expr": [..., {"counter": {"packets": N}}, ...]}}]}
  const items = (JSON.parse(r.out) as { nftables: { rule?: { comment?: string; expr: unknown[] } }[] }).nftables;
  for (const { rule } of items) {
    if (!rule) continue;
    const counter = rule.expr.find((e) => typeof e === "object" && e !== null && "counter" in e) as
      | { counter: { packets: number } }
      | undefined;
    const packets = counter?.counter.packets ?? 0;
    if (rule.comment === OUT_COMMENT) counters.droppedOut = packets;
    if (rule.comment === IN_COMMENT) counters.droppedIn = packets;
  }
  return counters;
}

export function removeFailClosed(netns?: string): void {
  nft(netns, ["delete", "table", "inet", WG_NFT_TABLE]);
}
