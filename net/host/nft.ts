/**
 * Masquerading with nftables, in a table of our own (`ip weave`), so nothing of anyone
 * else's is touched: applied atomically with `nft -f -`, checked on every reconcile,
 * removed on shutdown.
 *
 * Pods' traffic to anything outside the pod range leaves with the node's address.
 * Traffic to pods is never masqueraded by default (Weave's NO_MASQ_LOCAL=1), so a local
 * pod sees its clients' real addresses; with noMasqLocal false, traffic from outside the
 * range to local pods is masqueraded to the bridge address, as Weave did before 2.7.
 */
export const NFT_TABLE = "weave";

export type MasqSpec = { range: string; bridge: string; noMasqLocal: boolean };

/** Pure: the nft script that replaces our table with what `s` wants. */
export function masqScript(s: MasqSpec): string {
  const rules = [`ip saddr ${s.range} ip daddr != ${s.range} oifname != "${s.bridge}" masquerade comment "weave-masq"`];
  if (!s.noMasqLocal)
    rules.push(
      `ip saddr != ${s.range} ip daddr ${s.range} oifname "${s.bridge}" masquerade comment "weave-masq-local"`,
    );
  return [
    `add table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...rules.map((r) => `    ${r}`),
    `  }`,
    `}`,
    "",
  ].join("\n");
}

function nft(args: string[], stdin?: string): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["nft", ...args], {
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString().trim() };
}

/** Is our table there with the rules `s` wants? */
export function masqInPlace(s: MasqSpec): boolean {
  const r = nft(["list", "table", "ip", NFT_TABLE]);
  if (r.code !== 0) return false;
  const want = s.noMasqLocal ? ["weave-masq"] : ["weave-masq", "weave-masq-local"];
  const have = [...r.out.matchAll(/comment "([^"]+)"/g)].map((m) => m[1]);
  return want.length === have.length && want.every((w) => have.includes(w)) && r.out.includes(s.range);
}

export function applyMasq(s: MasqSpec): void {
  const r = nft(["-f", "-"], masqScript(s));
  if (r.code !== 0) throw new Error(`nft: ${r.err}`);
}

export function removeMasq(): void {
  nft(["delete", "table", "ip", NFT_TABLE]);
}
