/**
 * The CNI ADD path's half of "a new pod is closed before its first packet" (the
 * controller's half is in net/policy/compile.ts). Before the agent wires a new pod, it
 * puts the pod's address in `weave npc`'s pending maps, pointing at the chains of its
 * namespace: `<dir>-pending/<ns>` drops (and logs) when a policy of that namespace
 * isolates that direction, and is empty otherwise. So a pod of a namespace with policies
 * starts closed, one of a namespace without starts open, and both before any packet,
 * however late the controller hears of the pod; the controller replaces the entries
 * with the pod's own once it knows the pod.
 *
 * One `nft -f -` per ADD (~3 ms). Without the table (no controller on this node) or
 * without the namespace's chains (a namespace the controller has not seen, so no policy
 * it knows) the command fails and nothing is added: the pod starts open, as it would
 * with no controller at all. DEL removes the entries, so a reused address starts afresh.
 */
import { ipFamily } from "../cidr.ts";
import { type Direction, pendingChain, pendingMap, TABLE } from "../policy/names.ts";

export type Admission = {
  /** Adds the pending entries; returns false when there was nothing to add them to. */
  admit(ip: string, namespace: string): boolean;
  release(ip: string): void;
};

const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DIRECTIONS: Direction[] = ["ingress", "egress"];

function nftScript(script: string): boolean {
  const r = Bun.spawnSync(["nft", "-f", "-"], { stdin: Buffer.from(script), stdout: "ignore", stderr: "ignore" });
  return r.exitCode === 0;
}

export const npcAdmission: Admission = {
  admit(ip, namespace) {
    const f = ipFamily(ip);
    if (!f || !NAMESPACE_NAME.test(namespace)) return false;
    const element = (dir: Direction) => `${pendingMap(dir, f)} { ${ip} : jump ${pendingChain(dir, namespace)} }`;
    const add = DIRECTIONS.map((dir) => `add element inet ${TABLE} ${element(dir)}\n`).join("");
    if (nftScript(add)) return true;
    // an entry of an earlier pod with this address, left by a DEL that never came
    const replace = DIRECTIONS.map((dir) => `delete element inet ${TABLE} ${pendingMap(dir, f)} { ${ip} }\n`).join("");
    return nftScript(replace + add);
  },
  release(ip) {
    const f = ipFamily(ip);
    if (!f) return;
    nftScript(DIRECTIONS.map((dir) => `delete element inet ${TABLE} ${pendingMap(dir, f)} { ${ip} }\n`).join(""));
  },
};
