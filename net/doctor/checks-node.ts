/**
 * Checks of one node's kernel state and its pods: the bridge and VXLAN device, MTUs,
 * pod addresses and default routes, the pod range against the node's addresses and
 * routes. The bridge name and address come from the agent's report when it answers,
 * else from the kernel (the bridge `weave`).
 */
import {
  asRange,
  contains,
  ipToNum,
  overlaps,
  parseCidr,
  parseRange,
  rangeHolds,
  rangesOverlap,
  type Cidr,
  type IpRange,
} from "../cidr.ts";
import { localNodes, list, result } from "./result.ts";
import type { CheckResult, Facts, NodeFacts } from "./types.ts";

export const VXLAN_DEVICE = "vxlan-6784";
export const VXLAN_PORT = 6784;
export const VXLAN_OVERHEAD = 50;

const bridgeName = (n: NodeFacts) => n.agent.report?.Bridge?.Name ?? "weave";

/** The bridge's address on `n` (the pods' gateway). */
export function bridgeIp(n: NodeFacts): string | undefined {
  const fromReport = n.agent.report?.Bridge?.Address?.split("/")[0];
  return fromReport ?? n.addrs?.find((a) => a.ifname === bridgeName(n))?.ip;
}

function range(f: Facts): Cidr | undefined {
  const text = f.range ?? f.nodes.map((n) => n.agent.report?.IPAM.Range).find(Boolean);
  try {
    return text ? parseCidr(text) : undefined;
  } catch {
    return undefined;
  }
}

export function checkDevices(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    if (!n.links) continue;
    const br = n.links.find((l) => l.name === bridgeName(n));
    const vx = n.links.find((l) => l.name === VXLAN_DEVICE);
    const wrong: string[] = [];
    if (!br) wrong.push(`no bridge ${bridgeName(n)}`);
    else if (br.kind !== "bridge") wrong.push(`${br.name} is a ${br.kind ?? "plain"} device, not a bridge`);
    else if (!br.up) wrong.push(`${br.name} is down`);
    if (!vx) wrong.push(`no ${VXLAN_DEVICE}`);
    else {
      if (vx.kind !== "vxlan") wrong.push(`${VXLAN_DEVICE} is not a vxlan device`);
      if (!vx.up) wrong.push(`${VXLAN_DEVICE} is down`);
      if (vx.master !== bridgeName(n)) wrong.push(`${VXLAN_DEVICE} is not a port of ${bridgeName(n)}`);
      if (vx.vxlanPort !== undefined && vx.vxlanPort !== VXLAN_PORT)
        wrong.push(`${VXLAN_DEVICE} uses UDP ${vx.vxlanPort}`);
    }
    if (wrong.length) {
      const fix =
        n.agent.running === false
          ? `${f.hints.startAgent(n.name)}: the agent makes both and keeps them`
          : `the agent puts them back within 5 s; if they stay wrong, restart the agent and read ${f.hints.agentLogs(n.name)}`;
      out.push(result("devices", "fail", n.name, wrong.join("; "), fix));
    } else
      out.push(
        result(
          "devices",
          "pass",
          n.name,
          `${br!.name} (bridge) and ${VXLAN_DEVICE} (vxlan, UDP ${vx!.vxlanPort ?? VXLAN_PORT}) exist and are up`,
        ),
      );
  }
  return out;
}

/** The MTU of the interface VXLAN rides on: the one holding the device's local address, else the node's. */
export function underlayMtu(n: NodeFacts): { name: string; mtu: number } | undefined {
  const local = n.links?.find((l) => l.name === VXLAN_DEVICE)?.vxlanLocal ?? n.ip;
  const ifname = n.addrs?.find((a) => a.ip === local)?.ifname;
  const l = n.links?.find((x) => x.name === ifname);
  return l ? { name: l.name, mtu: l.mtu } : undefined;
}

export function checkMtu(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  const overlay = new Map<string, number>();
  for (const n of localNodes(f)) {
    const br = n.links?.find((l) => l.name === bridgeName(n));
    if (br) overlay.set(n.name, br.mtu);
  }
  const counts = new Map<number, number>();
  for (const m of overlay.values()) counts.set(m, (counts.get(m) ?? 0) + 1);
  const usual = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]?.[0];
  for (const n of localNodes(f)) {
    const b = overlay.get(n.name);
    if (b === undefined) continue;
    const seen = [`${bridgeName(n)} ${b}`];
    const wrong: string[] = [];
    const vx = n.links?.find((l) => l.name === VXLAN_DEVICE);
    if (vx) {
      seen.push(`${VXLAN_DEVICE} ${vx.mtu}`);
      if (vx.mtu !== b) wrong.push(`${VXLAN_DEVICE} has ${vx.mtu}`);
    }
    for (const l of n.links!.filter((l) => l.master === bridgeName(n) && l.name !== VXLAN_DEVICE && l.mtu !== b))
      wrong.push(`port ${l.name} has ${l.mtu}`);
    const pods = f.pods.filter((p) => p.node === n.name && p.mtu !== undefined);
    if (pods.length) seen.push(`${pods.length} pod(s) ${[...new Set(pods.map((p) => p.mtu))].join("/")}`);
    for (const p of pods) if (p.mtu !== b) wrong.push(`pod ${p.name} has ${p.mtu}`);
    const u = underlayMtu(n);
    if (u) seen.push(`underlay ${u.name} ${u.mtu}`);
    let fix =
      `set every pod-side MTU to ${b}: the agent sets the bridge and VXLAN device; ` +
      "pods keep the MTU they were made with, so re-create pods made before an MTU change";
    if (u && b > u.mtu - VXLAN_OVERHEAD) {
      wrong.unshift(
        `overlay ${b} + ${VXLAN_OVERHEAD} bytes of VXLAN headers do not fit the underlay ${u.name} MTU ${u.mtu}`,
      );
      fix =
        `give ${u.name} on ${n.name} an MTU of at least ${b + VXLAN_OVERHEAD} again, ` +
        `or set WEAVE_MTU=${u.mtu - VXLAN_OVERHEAD} on every node and restart the agents (then re-create the pods)`;
    } else if (usual !== undefined && b !== usual) {
      wrong.unshift(`overlay MTU ${b} differs from the other nodes' ${usual}`);
      fix = `use one overlay MTU on every node: set WEAVE_MTU to the smallest underlay MTU minus ${VXLAN_OVERHEAD} everywhere and restart the agents`;
    }
    if (wrong.length) out.push(result("mtu", "fail", n.name, `${wrong.join("; ")} (${seen.join(", ")})`, fix));
    else out.push(result("mtu", "pass", n.name, seen.join(", ")));
  }
  return out;
}

export function checkPods(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  const r = range(f);
  for (const p of f.pods) {
    const node = f.nodes.find((n) => n.name === p.node);
    if (p.error) {
      out.push(
        result(
          "pod-address",
          "fail",
          p.node,
          `pod ${p.name}: cannot look into its namespace: ${p.error}`,
          "the pod's network namespace is gone: delete the pod so it is made again",
        ),
      );
      continue;
    }
    // address
    const owned = node?.agent.report?.IPAM.Owned;
    const held = owned?.find(
      (o) => o.Address.split("/")[0] === p.ip && (!p.containerId || o.ContainerID === p.containerId),
    );
    if (!p.ip)
      out.push(
        result(
          "pod-address",
          "fail",
          p.node,
          `pod ${p.name}: eth0 has no IPv4 address`,
          "the pod is stuck without an address: delete it so the runtime runs CNI ADD again (see the agent check if that fails)",
        ),
      );
    else if (r && !contains(r, ipToNum(p.ip)))
      out.push(
        result(
          "pod-address",
          "fail",
          p.node,
          `pod ${p.name}: ${p.ip} is outside the pod range`,
          "another network plugin wired this pod (see cni-config): delete the pod once only weave's config is left",
        ),
      );
    else if (p.expectedIp && p.expectedIp !== p.ip)
      out.push(
        result(
          "pod-address",
          "fail",
          p.node,
          `pod ${p.name}: eth0 has ${p.ip}, it was given ${p.expectedIp}`,
          "something changed the pod's address by hand: delete the pod so it is wired again",
        ),
      );
    else if (owned && !held)
      out.push(
        result(
          "pod-address",
          "fail",
          p.node,
          `pod ${p.name}: ${p.ip} is not held by the agent of ${p.node}, so it can be handed out twice`,
          "delete the pod so CNI ADD allocates its address again",
        ),
      );
    else
      out.push(
        result(
          "pod-address",
          "pass",
          p.node,
          `pod ${p.name}: ${p.ip}${held ? `, held by the agent of ${p.node}` : ""}`,
        ),
      );
    // default route
    const gw = node ? bridgeIp(node) : undefined;
    if (!p.ip) continue;
    if (!p.gateway)
      out.push(
        result(
          "pod-route",
          "fail",
          p.node,
          `pod ${p.name} has no default route${gw ? ` (should be via ${gw}, the bridge)` : ""}`,
          `put it back: ${f.hints.onNode(p.name)}ip route add default via ${gw ?? "<bridge address>"} dev eth0, or delete the pod so it is wired again`,
        ),
      );
    else if (gw && p.gateway !== gw)
      out.push(
        result(
          "pod-route",
          "fail",
          p.node,
          `pod ${p.name}'s default route goes via ${p.gateway}, not via the bridge ${gw}`,
          `fix it: ${f.hints.onNode(p.name)}ip route replace default via ${gw} dev eth0, or delete the pod so it is wired again`,
        ),
      );
    else
      out.push(
        result("pod-route", "pass", p.node, `pod ${p.name}: default via ${p.gateway}${gw ? " (the bridge)" : ""}`),
      );
  }
  return out;
}

export function checkRangeOverlap(f: Facts): CheckResult[] {
  const r = range(f);
  if (!r) return [];
  const out: CheckResult[] = [];
  const rangeText = `${f.range ?? f.nodes.map((n) => n.agent.report?.IPAM.Range).find(Boolean)}`;
  if (f.serviceRange) {
    let serviceRanges: IpRange[] = [];
    try {
      serviceRanges = f.serviceRange.split(",").map((text) => parseRange(text.trim(), false));
    } catch {
      /* an unreadable service range is not checked */
    }
    if (serviceRanges.some((svc) => rangesOverlap(asRange(r), svc)))
      out.push(
        result(
          "range-overlap",
          "fail",
          undefined,
          `the pod range ${rangeText} overlaps the service range ${f.serviceRange}`,
          "pick an IPALLOC_RANGE outside the service range (a new range needs every agent's data dir reset)",
        ),
      );
  }
  for (const n of localNodes(f)) {
    if (!n.addrs && !n.routes) continue;
    const br = bridgeName(n);
    const bad: string[] = [];
    const wide: string[] = [];
    let fix = "";
    for (const a of n.addrs ?? []) {
      if (a.ifname !== br && rangeHolds(asRange(r), a.ip)) {
        bad.push(`address ${a.ip}/${a.prefix} on ${a.ifname} is inside it`);
        fix ||= `pick an IPALLOC_RANGE that holds no node address (a new range needs every agent's data dir reset)`;
      }
    }
    for (const rt of n.routes ?? []) {
      if (rt.dev === br) continue;
      let c: Cidr;
      try {
        c = parseCidr(rt.dst, false);
      } catch {
        continue;
      }
      if (c.prefix === 0 || !overlaps(c, r)) continue;
      const kind = rt.type && rt.type !== "unicast" ? `${rt.type} ` : "";
      const via = rt.gateway ? ` via ${rt.gateway}` : "";
      const dev = rt.dev ? ` dev ${rt.dev}` : "";
      const table = rt.table && rt.table !== "main" ? ` table ${rt.table}` : "";
      const text = `${kind}${rt.dst}${via}${dev}${table}`;
      if (c.prefix >= r.prefix) {
        bad.push(`route ${text} overlaps it`);
        const del = `ip route del ${rt.dst}${dev}${table}`;
        fix ||= `remove the route (${f.hints.onNode(n.name)}${del}) or pick an IPALLOC_RANGE clear of it`;
      } else wide.push(`route ${text} covers it`);
    }
    if (bad.length) out.push(result("range-overlap", "fail", n.name, `pod range ${rangeText}: ${list(bad, 4)}`, fix));
    else if (wide.length)
      out.push(
        result(
          "range-overlap",
          "warn",
          n.name,
          `pod range ${rangeText}: ${list(wide, 3)}; pods still win by longest prefix while the bridge route exists`,
          "make sure the wider route is meant to cover pod addresses, or narrow it",
        ),
      );
    else
      out.push(
        result(
          "range-overlap",
          "pass",
          n.name,
          `pod range ${rangeText} overlaps no address or route of the node${f.serviceRange ? ` nor the service range ${f.serviceRange}` : ""}`,
        ),
      );
  }
  return out;
}
