/**
 * The names in table `inet weave-npc`, shared by the compiler, the controller and the
 * agent's CNI ADD path (which writes the pending maps, see compile.ts). Chains of pods
 * and namespaces are readable (`ingress/<ns>/<pod>`: nft identifiers may hold `/`,
 * `.` and `-`, as pod names do); sets of peers are digests of what they select.
 */
import { createHash } from "node:crypto";

export const TABLE = "weave-npc";
/** The NFLOG group of dropped connections (weave-npc's). */
export const LOG_GROUP = 86;
export const LOG_TAG = "weave-npc";

export type Direction = "ingress" | "egress";
export type Family = 4 | 6;

export function digest(text: string, chars = 10): string {
  return createHash("sha256").update(text).digest("hex").slice(0, chars);
}

/** A name of at most ~200 characters: longer ones keep their start and end in a digest. */
export function nftName(text: string): string {
  return text.length <= 200 ? text : `${text.slice(0, 180)}~${digest(text)}`;
}

/** The chain of a local pod isolated in `dir`. */
export const podChain = (dir: Direction, ns: string, pod: string) => nftName(`${dir}/${ns}/${pod}`);
/** The chain a pod of namespace `ns` goes through before the controller has synced it. */
export const pendingChain = (dir: Direction, ns: string) => `${dir}-pending/${ns}`;
/** The verdict map from a local pod's address to its chain. */
export const dispatchMap = (dir: Direction, f: Family) => `${dir}-v${f}`;
/** The verdict map the CNI ADD path fills for pods not synced yet. */
export const pendingMap = (dir: Direction, f: Family) => `pending-${dir}-v${f}`;

export const addressType = (f: Family) => (f === 4 ? "ipv4_addr" : "ipv6_addr");
export const addressMatch = (f: Family) => (f === 4 ? "ip" : "ip6");

/** The NFLOG prefix of a chain's drop: `weave-npc ingress <ns>/<pod>` (nft allows 127 bytes). */
export function logPrefix(dir: Direction, who: string): string {
  return `${LOG_TAG} ${dir} ${who}`.slice(0, 127);
}

/** The direction a logged drop came from, by its prefix. */
export function parseLogPrefix(prefix: string): { dir: Direction; who: string } | undefined {
  const m = /^weave-npc (ingress|egress) (.*)$/.exec(prefix.replace(/\0.*$/s, ""));
  return m ? { dir: m[1] as Direction, who: m[2]! } : undefined;
}
