/**
 * The VXLAN datapath of one node as desired state (pure). From the topology (which peers
 * are reachable, at which underlay address, with which pods) it computes the FDB entries
 * of the `vxlan-6784` device and the neighbour entries of the bridge, and diffs them
 * against what the kernel has; net/agent/datapath.ts applies the difference.
 *
 * - Flood entries (all-zero MAC) to every reachable peer carry broadcast and ARP.
 * - A static FDB entry per remote pod sends its MAC straight to its node: no flooding to
 *   find pods. Pod MACs derive from pod addresses (net/cidr.ts macForIp), so the gossip
 *   carries only addresses.
 * - A neighbour entry per remote pod on the bridge spares the node itself an ARP.
 * - A peer on the sleeve (net/agent/sleeve-path.ts) keeps only its bridge's entry here,
 *   for the heartbeats that tell when VXLAN crosses again; its pods' frames go to the
 *   sleeve's port of the bridge instead (`sleeveMacs`).
 * The kernel encapsulates and decapsulates; the agent only keeps these tables.
 */
import { macForIp, numToIp } from "../cidr.ts";

export const VXLAN_NAME = "vxlan-6784";
export const VXLAN_PORT = 6784;
/** VNI 0x776561 ("wea"), fixed so every node agrees without configuration. */
export const VXLAN_VNI = 0x776561;
export const FLOOD_MAC = "00:00:00:00:00:00";

export type Remote = {
  name: string;
  ip: string;
  pods: number[];
  /** Its bridge's address (one of `pods`), when it gossips it. */
  bridge?: number;
  /** How its pods' traffic goes; absent = fastdp. */
  path?: "fastdp" | "sleeve";
};
export type FdbWant = { mac: string; dst: string };
export type NeighWant = { ip: string; mac: string };

export type DatapathPlan = {
  fdbAdd: FdbWant[];
  fdbDel: FdbWant[];
  neighAdd: NeighWant[];
  neighDel: string[];
};

/** Pure: what the tables should hold for these remote peers. */
export function desiredTables(remotes: Remote[]): { fdb: FdbWant[]; neigh: NeighWant[] } {
  const fdb: FdbWant[] = [];
  const neigh: NeighWant[] = [];
  for (const r of [...remotes].sort((a, b) => a.name.localeCompare(b.name))) {
    const fast = r.path !== "sleeve";
    if (fast) fdb.push({ mac: FLOOD_MAC, dst: r.ip });
    for (const p of r.pods) {
      const mac = macForIp(p);
      if (fast || p === r.bridge) fdb.push({ mac, dst: r.ip });
      neigh.push({ ip: numToIp(p), mac });
    }
  }
  return { fdb, neigh };
}

/** Pure: the pod MACs of peers on the sleeve (their bridges' stay with VXLAN), with the peer that has each. */
export function sleeveMacs(remotes: Remote[]): { mac: string; peer: string }[] {
  return remotes
    .filter((r) => r.path === "sleeve")
    .flatMap((r) => r.pods.filter((p) => p !== r.bridge).map((p) => ({ mac: macForIp(p), peer: r.ip })));
}

/** Pure: the difference between what the kernel has and what we want. */
export function planDatapath(
  want: { fdb: FdbWant[]; neigh: NeighWant[] },
  have: { fdb: FdbWant[]; neigh: NeighWant[] },
): DatapathPlan {
  const key = (f: FdbWant) => `${f.mac}>${f.dst}`;
  const wantF = new Set(want.fdb.map(key));
  const haveF = new Set(have.fdb.map(key));
  const haveN = new Map(have.neigh.map((n) => [n.ip, n.mac]));
  const wantN = new Map(want.neigh.map((n) => [n.ip, n.mac]));
  return {
    fdbAdd: want.fdb.filter((f) => !haveF.has(key(f))),
    fdbDel: have.fdb.filter((f) => !wantF.has(key(f))),
    neighAdd: want.neigh.filter((n) => haveN.get(n.ip) !== n.mac),
    neighDel: have.neigh.filter((n) => !wantN.has(n.ip)).map((n) => n.ip),
  };
}
