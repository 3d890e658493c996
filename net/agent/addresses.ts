/** Which of the node's addresses peers should reach it at (pure). */
import type { Link, Route } from "../host/host.ts";

/**
 * The IPv4 address of the interface of the default route; else the first global address
 * on an up interface that is not ours (bridge, veths, VXLAN) or loopback.
 */
export function pickAdvertiseAddress(
  links: Link[],
  addrs: { index: number; cidr: string }[],
  routes: Route[],
  ours: (l: Link) => boolean,
): string | undefined {
  const usable = new Map(links.filter((l) => l.up && l.name !== "lo" && !ours(l)).map((l) => [l.index, l]));
  const global = addrs.filter(
    (a) => usable.has(a.index) && !a.cidr.startsWith("127.") && !a.cidr.startsWith("169.254."),
  );
  const dflt = routes.find((r) => r.dst === "0.0.0.0/0" && r.table === 254 && r.dev !== undefined);
  const viaDefault = dflt && global.find((a) => a.index === dflt.dev);
  return (viaDefault ?? global.sort((a, b) => a.index - b.index)[0])?.cidr.split("/")[0];
}
