/**
 * The node's bridge as desired state: a plan of steps from what the kernel has to what
 * we want, applied through the host layer. The agent runs it at start and then
 * periodically, so a bridge deleted or changed by hand comes back.
 */
import type { Link, NetHost } from "../host/host.ts";

export type BridgeSpec = { name: string; mtu: number; mac: string; cidr: string };

export type Step =
  | { op: "create"; name: string; mtu: number; mac: string }
  | { op: "set-mtu"; mtu: number }
  | { op: "set-mac"; mac: string }
  | { op: "up" }
  | { op: "add-addr"; cidr: string }
  | { op: "del-addr"; cidr: string };

/** Pure: the steps that turn `have` (undefined when missing) into `want`. */
export function planBridge(want: BridgeSpec, have: Link | undefined, addrs: string[]): Step[] {
  if (!have)
    return [
      { op: "create", name: want.name, mtu: want.mtu, mac: want.mac },
      { op: "add-addr", cidr: want.cidr },
    ];
  const steps: Step[] = [];
  if (have.mtu !== want.mtu) steps.push({ op: "set-mtu", mtu: want.mtu });
  if (have.mac !== want.mac) steps.push({ op: "set-mac", mac: want.mac });
  if (!have.up) steps.push({ op: "up" });
  for (const a of addrs) if (a !== want.cidr) steps.push({ op: "del-addr", cidr: a });
  if (!addrs.includes(want.cidr)) steps.push({ op: "add-addr", cidr: want.cidr });
  return steps;
}

/** Bring the bridge to `want`; returns the steps taken (empty when it already was). */
export function reconcileBridge(host: NetHost, want: BridgeSpec): Step[] {
  let link = host.link(want.name);
  const steps = planBridge(want, link, link ? host.addrs(link.index).map((a) => a.cidr) : []);
  for (const s of steps) {
    switch (s.op) {
      case "create":
        link = host.addBridge(s.name, { mtu: s.mtu, mac: s.mac });
        break;
      case "set-mtu":
        host.setLink(link!.index, { mtu: s.mtu });
        break;
      case "set-mac":
        host.setLink(link!.index, { mac: s.mac });
        break;
      case "up":
        host.setLink(link!.index, { up: true });
        break;
      case "add-addr":
        host.addAddr(link!.index, s.cidr);
        break;
      case "del-addr":
        host.delAddr(link!.index, s.cidr);
        break;
    }
  }
  return steps;
}
