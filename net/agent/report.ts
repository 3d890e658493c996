/**
 * What the agent says about itself: /report as JSON in Weave's shape where it fits,
 * and the text of /status, /status/peers, /status/connections, /status/ipam.
 */
import { formatCidr, withPrefix } from "../cidr.ts";
import { PROTOCOL_MAX, PROTOCOL_MIN } from "../mesh/frame.ts";
import type { Agent } from "./agent.ts";

export function report(a: Agent): Record<string, unknown> {
  const r = a.router;
  const t = r?.topology;
  const range = formatCidr(a.cfg.range);
  return {
    Ready: a.ready,
    Reason: a.reason,
    Version: a.version(),
    Router: r
      ? {
          Protocol: "weave",
          ProtocolMinVersion: PROTOCOL_MIN,
          ProtocolMaxVersion: PROTOCOL_MAX,
          Encryption: "disabled",
          PeerDiscovery: a.cfg.discovery ?? true,
          Name: a.name,
          NickName: a.cfg.nickname,
          Address: a.advertise,
          Peers: t!.entries().map((e) => ({
            Name: e.name,
            NickName: e.nickname,
            UID: e.uid,
            Version: e.version,
            Addresses: e.addresses,
            Pods: e.pods.length,
            Reachable: t!.reachable().has(e.name),
            Connections: e.connections.map((n) => ({ Name: n, NickName: t!.get(n)?.nickname ?? "", Established: t!.get(n)?.connections.includes(e.name) ?? false })),
          })),
          UnicastRoutes: [...t!.routes()].filter(([d]) => d !== a.name).map(([Dest, Via]) => ({ Dest, Via })),
          Connections: r.connections().map((c) => ({ Address: c.address, Outbound: c.outbound, State: c.state, Info: c.info, Attrs: c.state === "established" ? { name: "fastdp", mtu: a.bridge?.mtu } : null })),
          Targets: r.explicitTargets(),
          DatapathErrors: a.datapathErrors,
        }
      : null,
    Bridge: a.bridge ? { Name: a.bridge.name, Address: a.bridge.cidr, MTU: a.bridge.mtu, MTUSource: a.mtuSource } : null,
    IPAM: {
      Range: range,
      RangeNumIPs: a.allocator?.capacity ?? 0,
      ActiveIPs: a.allocator?.active ?? 0,
      DefaultSubnet: range,
      Owned: a.allocator ? a.podEntries().map((e) => ({ ContainerID: e.containerId, Ifname: e.ifname, Address: withPrefix(e.address, a.cfg.range), Pod: e.pod ?? null })) : [],
    },
  };
}

const kv = (rows: [string, string][]) => rows.map(([k, v]) => `${k.padStart(15)}: ${v}`).join("\n") + "\n";

export function statusText(a: Agent): string {
  const rows: [string, string][] = [["Version", a.version()]];
  const r = a.router;
  if (r) {
    const conns = r.connections();
    const by = (s: string) => conns.filter((c) => c.state === s).length;
    const states = ["established", "pending", "retrying", "failed"].filter((s) => by(s)).map((s) => `${by(s)} ${s}`);
    const t = r.topology;
    const edges = t.entries().reduce((n, e) => n + e.connections.length, 0);
    rows.push(
      ["Service", "router"],
      ["Protocol", `weave ${PROTOCOL_MIN}..${PROTOCOL_MAX}`],
      ["Name", `${a.name}(${a.cfg.nickname})`],
      ["Encryption", "disabled"],
      ["PeerDiscovery", a.cfg.discovery === false ? "disabled" : "enabled"],
      ["Targets", String(r.explicitTargets().length)],
      ["Connections", `${conns.length}${states.length ? ` (${states.join(", ")})` : ""}`],
      ["Peers", `${t.size} (with ${edges} established connections, ${t.reachable().size} reachable)`],
    );
    if (a.datapathErrors.length) rows.push(["Datapath", `errors: ${a.datapathErrors.join("; ")}`]);
  }
  rows.push(["Service", "ipam"], ["Status", a.ready ? "ready" : a.reason], ["Range", formatCidr(a.cfg.range)], ["DefaultSubnet", formatCidr(a.cfg.range)]);
  if (a.bridge) rows.push(["Bridge", `${a.bridge.name} ${a.bridge.cidr} mtu ${a.bridge.mtu}`]);
  if (a.allocator) rows.push(["Pod IPs", `${a.podEntries().length} held, ${a.allocator.capacity - a.allocator.active} free`]);
  return kv(rows);
}

/** One line per peer with its connections, like `weave status peers`. */
export function peersText(a: Agent): string {
  const t = a.router?.topology;
  if (!t) return "mesh not running\n";
  const reach = t.reachable();
  const lines: string[] = [];
  for (const e of t.entries().sort((x, y) => x.nickname.localeCompare(y.nickname))) {
    lines.push(`${e.name}(${e.nickname})${e.name === a.name ? " [this peer]" : reach.has(e.name) ? "" : " [unreachable]"} ${e.addresses.join(",")} pods=${e.pods.length}`);
    for (const n of e.connections) {
      const other = t.get(n);
      lines.push(`   -> ${n}(${other?.nickname ?? "?"}) ${other?.connections.includes(e.name) ? "established" : "one-sided"}`);
    }
  }
  return lines.join("\n") + "\n";
}

export function connectionsText(a: Agent): string {
  const r = a.router;
  if (!r) return "mesh not running\n";
  return r.connections().map((c) => `${c.outbound ? "->" : "<-"} ${c.address.padEnd(22)} ${c.state.padEnd(12)} ${c.info}`).join("\n") + "\n";
}

export function ipamText(a: Agent): string {
  const lines = [`range ${formatCidr(a.cfg.range)}: ${a.allocator.active} of ${a.allocator.capacity} addresses held`];
  for (const e of a.allocator.list()) lines.push(`${withPrefix(e.address, a.cfg.range).padEnd(18)} ${e.containerId} ${e.ifname}${e.pod ? ` ${e.pod}` : ""}`);
  return lines.join("\n") + "\n";
}
