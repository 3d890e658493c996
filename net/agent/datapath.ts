/**
 * Applies the VXLAN plan (net/encap/vxlan.ts) through the host layer: the device itself
 * (kind, MTU, a port of the bridge, up, isolated), then the FDB and neighbour differences.
 *
 * Isolated, as the sleeve's TAP port is (net/agent/sleeve-path.ts): a frame that came from
 * another node never goes back out to other nodes. Each node reaches every peer itself
 * (VXLAN's flood entries, the sleeve's own relay), so the bridge has nothing to forward
 * between the two; without it a broadcast that came in on one went out on the other, and
 * while two nodes disagreed on a pair's path (a second or more at each move) it looped
 * between them, and the bridge learned the node's own pods' MACs on the VXLAN port.
 */
import type { NetHost } from "../host/host.ts";
import { desiredTables, planDatapath, type Remote, VXLAN_NAME, VXLAN_PORT, VXLAN_VNI } from "../encap/vxlan.ts";

export type VxlanSettings = {
  bridge: string;
  mtu: number;
  local: string;
  inRange(ip: string): boolean;
  /**
   * Delete what the plan no longer wants. False right after a start, until the mesh has
   * been heard from: a restarted agent keeps the kernel's entries, so flows to remote
   * pods go on while it relearns them (it only adds meanwhile).
   */
  prune: boolean;
};

/** The VXLAN device each host's bridge port was last isolated for (once per device). */
const isolatedPort = new WeakMap<NetHost, number>();

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
    isolatedPort.delete(host);
    changes++;
  }
  if (isolatedPort.get(host) !== vx.index) {
    host.setBridgePort(vx.index, { isolated: true });
    isolatedPort.set(host, vx.index);
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
  if (!s.prune) {
    plan.fdbDel = [];
    plan.neighDel = [];
  }
  for (const f of plan.fdbDel)
    attempt(`delete fdb ${f.mac} dst ${f.dst}`, () => host.delFdb({ dev: vx!.index, mac: f.mac, dst: f.dst }));
  for (const f of plan.fdbAdd)
    attempt(`add fdb ${f.mac} dst ${f.dst}`, () => host.addFdb({ dev: vx!.index, mac: f.mac, dst: f.dst }));
  for (const ip of plan.neighDel) attempt(`delete neighbour ${ip}`, () => host.delNeighbour({ dev: br.index, ip }));
  for (const n of plan.neighAdd)
    attempt(`set neighbour ${n.ip}`, () => host.setNeighbour({ dev: br.index, ip: n.ip, mac: n.mac }));
  return { changes, errors };
}
