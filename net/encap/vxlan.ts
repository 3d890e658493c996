/**
 * The VXLAN datapath of one node as desired state. From the topology (which peers are
 * reachable, at which underlay address, with which pods) it computes the FDB entries of
 * the `vxlan-6784` device and the neighbour entries of the bridge, diffs them against
 * what the kernel has, and applies the difference through the host layer.
 *
 * - Flood entries (all-zero MAC) to every reachable peer carry broadcast and ARP.
 * - A static FDB entry per remote pod sends its MAC straight to its node: no flooding to
 *   find pods. Pod MACs derive from pod addresses (net/cidr.ts macForIp), so the gossip
 *   carries only addresses.
 * - A neighbour entry per remote pod on the bridge spares the node itself an ARP.
 * The kernel encapsulates and decapsulates; the agent only keeps these tables.
 */
import type { NetHost } from "../host/host.ts";
import { macForIp, numToIp } from "../cidr.ts";

export const VXLAN_NAME = "vxlan-6784";
export const VXLAN_PORT = 6784;
/** VNI 0x776561 ("wea"), fixed so every node agrees without configuration. */
export const VXLAN_VNI = 0x776561;
export const FLOOD_MAC = "00:00:00:00:00:00";

export type Remote = { name: string; ip: string; pods: number[] };
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
    fdb.push({ mac: FLOOD_MAC, dst: r.ip });
    for (const p of r.pods) {
      const mac = macForIp(p);
      fdb.push({ mac, dst: r.ip });
      neigh.push({ ip: numToIp(p), mac });
    }
  }
  return { fdb, neigh };
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

export type VxlanSettings = { bridge: string; mtu: number; local: string; inRange(ip: string): boolean };

/**
 * Bring the VXLAN device and the tables to what `remotes` need. Keeps going past a
 * failed entry and returns every error, so one bad entry never blocks the rest.
 */
export function reconcileVxlan(
  host: NetHost,
  s: VxlanSettings,
  remotes: Remote[],
): { changes: number; errors: string[] } {
  const errors: string[] = [];
  const br = host.link(s.bridge);
  if (!br) return { changes: 0, errors: [`bridge ${s.bridge} is missing`] };
  let vx = host.link(VXLAN_NAME);
  let changes = 0;
  if (vx && (vx.kind !== "vxlan" || vx.mtu !== s.mtu)) {
    if (vx.kind !== "vxlan") {
      host.delLink(VXLAN_NAME);
      vx = undefined;
    } else host.setLink(vx.index, { mtu: s.mtu });
    changes++;
  }
  if (!vx) {
    vx = host.addVxlan({
      name: VXLAN_NAME,
      vni: VXLAN_VNI,
      port: VXLAN_PORT,
      local: s.local,
      mtu: s.mtu,
      learning: false,
    });
    changes++;
  }
  if (vx.master !== br.index || !vx.up) {
    host.setLink(vx.index, { master: br.index, up: true });
    changes++;
  }
  const have = {
    fdb: host
      .fdb(vx.index)
      .filter((f) => f.dst !== undefined)
      .map((f) => ({ mac: f.mac, dst: f.dst! })),
    neigh: host
      .neighbours(br.index)
      .filter((n) => n.state & 0x80 && s.inRange(n.ip) && n.mac)
      .map((n) => ({ ip: n.ip, mac: n.mac! })),
  };
  const plan = planDatapath(desiredTables(remotes), have);
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
      changes++;
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  for (const f of plan.fdbDel)
    attempt(`delete fdb ${f.mac} dst ${f.dst}`, () => host.delFdb({ dev: vx!.index, mac: f.mac, dst: f.dst }));
  for (const f of plan.fdbAdd)
    attempt(`add fdb ${f.mac} dst ${f.dst}`, () => host.addFdb({ dev: vx!.index, mac: f.mac, dst: f.dst }));
  for (const ip of plan.neighDel) attempt(`delete neighbour ${ip}`, () => host.delNeighbour({ dev: br.index, ip }));
  for (const n of plan.neighAdd)
    attempt(`set neighbour ${n.ip}`, () => host.setNeighbour({ dev: br.index, ip: n.ip, mac: n.mac }));
  return { changes, errors };
}
