/**
 * Overlay MTU: the underlay's minus VXLAN's 50 bytes of headers (outer Ethernet 14,
 * IPv4 20, UDP 8, VXLAN 8). The underlay is the interface of the default route, else
 * the smallest MTU among the node's other up interfaces.
 */
import type { Link, Route } from "../host/host.ts";

export const VXLAN_OVERHEAD = 50;
export const FALLBACK_MTU = 1376;

export function underlayMtu(links: Link[], routes: Route[], ignore: (l: Link) => boolean): number | undefined {
  const candidates = links.filter((l) => l.up && l.name !== "lo" && !ignore(l));
  const viaDefault = routes.find((r) => r.dst === "0.0.0.0/0" && r.table === 254 && r.dev !== undefined);
  const dflt = viaDefault && candidates.find((l) => l.index === viaDefault.dev);
  if (dflt) return dflt.mtu;
  const mtus = candidates.map((l) => l.mtu).filter((m) => m > 0);
  return mtus.length ? Math.min(...mtus) : undefined;
}

export function overlayMtu(
  links: Link[],
  routes: Route[],
  ignore: (l: Link) => boolean,
): { mtu: number; from: string } {
  const u = underlayMtu(links, routes, ignore);
  return u === undefined
    ? { mtu: FALLBACK_MTU, from: `no underlay interface found, using ${FALLBACK_MTU}` }
    : { mtu: u - VXLAN_OVERHEAD, from: `underlay MTU ${u} - ${VXLAN_OVERHEAD}` };
}
