/**
 * The kernel side of `weave npc`: read table `inet weave-npc` as it is, apply one
 * transaction (`nft -f -`: all of it or nothing), and make sure bridged pod traffic
 * reaches the forward hook at all (br_netfilter's net.bridge.bridge-nf-call-iptables,
 * per network namespace; measured here: with it 0, bridged packets skip inet forward).
 *
 * Nothing here flushes or deletes on its own: a controller that starts again reads the
 * table the last one left, and the kernel keeps enforcing it until the first sync
 * replaces it in one transaction.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { TABLE } from "../policy/names.ts";
import type { NftTable, Transaction } from "../policy/nft-model.ts";
import { tableFromJson } from "../policy/nft-json.ts";

export class NftError extends Error {
  constructor(
    readonly op: string,
    readonly stderr: string,
  ) {
    super(`nft ${op}: ${stderr}`);
    this.name = "NftError";
  }
}

function nft(args: string[], stdin?: string): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["nft", ...args], {
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString().trim() };
}

/** The kernel's table, or undefined when there is none. */
export function readNpcTable(): NftTable | undefined {
  const r = nft(["-j", "list", "table", "inet", TABLE]);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.err)) return undefined;
    throw new NftError("list", r.err);
  }
  return tableFromJson(r.out, TABLE);
}

/** Runs the transaction once; an NftError (with nft's message) leaves the kernel as it was. */
export function applyTransaction(tx: Transaction): void {
  if (tx.empty) return;
  const r = nft(["-f", "-"], tx.text());
  if (r.code !== 0) throw new NftError("-f", r.err);
}

/** The counter of each chain's final drop, by chain (for metrics and doctor). */
export function dropCounters(): Map<string, number> {
  const out = new Map<string, number>();
  const r = nft(["-j", "list", "table", "inet", TABLE]);
  if (r.code !== 0) return out;
  for (const item of (JSON.parse(r.out) as { nftables: { rule?: { chain: string; expr: unknown[] } }[] }).nftables) {
    const expr = item.rule?.expr ?? [];
    const counter = expr.find((e) => typeof e === "object" && e && "counter" in e) as
      | { counter: { packets: number } }
      | undefined;
    if (counter && expr.some((e) => typeof e === "object" && e && "drop" in e))
      out.set(item.rule!.chain, counter.counter.packets);
  }
  return out;
}

const BRIDGE_SYSCTLS = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];

/**
 * Sets br_netfilter's switches to 1 in this namespace; returns what it changed. Without
 * them a bridged packet between two pods never meets the forward hook, and no policy holds.
 */
export function ensureBridgeNetfilter(): string[] {
  const changed: string[] = [];
  for (const key of BRIDGE_SYSCTLS) {
    const path = `/proc/sys/net/bridge/${key}`;
    if (!existsSync(path))
      throw new NftError("sysctl", `${path} does not exist: the kernel has no br_netfilter, so policies cannot hold`);
    if (readFileSync(path, "utf8").trim() === "1") continue;
    writeFileSync(path, "1");
    changed.push(`net.bridge.${key}`);
  }
  return changed;
}
