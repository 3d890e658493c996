/**
 * What the agent says about itself: /report as JSON in Weave's shape where it fits,
 * and the text of /status, /status/peers, /status/connections, /status/ipam.
 */
import { formatCidr, numToIp, withPrefix } from "../cidr.ts";
import { spanSize, type IpamState } from "../ipam/ring.ts";
import type { Span } from "../ipam/allocator.ts";
import { PROTOCOL_MAX, PROTOCOL_MIN } from "../mesh/frame.ts";
import { VERSION } from "../version.ts";
import { passwordLabels, rotationStatus } from "../crypto/rotation.ts";
import type { Agent } from "./agent.ts";

export function report(a: Agent): Record<string, unknown> {
  const r = a.router;
  const t = r?.topology;
  const range = formatCidr(a.cfg.range);
  return {
    Ready: a.ready,
    Reason: a.reason,
    Version: VERSION,
    /** Where what changes state is served (root only); tools read it here. */
    Socket: a.cfg.socket,
    Router: r
      ? {
          Protocol: "weave",
          ProtocolMinVersion: PROTOCOL_MIN,
          ProtocolMaxVersion: PROTOCOL_MAX,
          Encryption: r.encrypted,
          ...(r.encrypted ? { Rotation: rotationReport(a) } : {}),
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
            ...(r.encrypted ? { Passwords: passwordLabels(r.passwordFingerprints, e.passwords) } : {}),
            Connections: e.connections.map((n) => ({
              Name: n,
              NickName: t!.get(n)?.nickname ?? "",
              Established: t!.get(n)?.connections.includes(e.name) ?? false,
            })),
          })),
          UnicastRoutes: [...t!.routes()].filter(([d]) => d !== a.name).map(([Dest, Via]) => ({ Dest, Via })),
          Connections: r.connections().map((c) => ({
            Address: c.address,
            Outbound: c.outbound,
            State: c.state,
            Info: c.info,
            Attrs: c.state === "established" ? connectionAttrs(a, c) : null,
          })),
          DataPaths: dataPaths(a),
          Targets: r.explicitTargets(),
          DatapathErrors: a.datapathErrors,
        }
      : null,
    Bridge: a.bridge
      ? { Name: a.bridge.name, Address: a.bridge.cidr, MTU: a.bridge.mtu, MTUSource: a.mtuSource }
      : null,
    IPAM: {
      Range: range,
      RangeNumIPs: a.allocator?.capacity ?? 0,
      ActiveIPs: a.allocator?.active ?? 0,
      DefaultSubnet: range,
      Ring: a.ipam.ring,
      Status: a.ipamWaiting || (a.bridge ? "ready" : "waiting for space"),
      Conflicts: a.ipamConflicts,
      Spans: a.ipam.owned.map(spanText),
      Free: a.allocator?.free ?? 0,
      Asking: a.ipam.want > 0,
      Entries: (a.router?.topology.entries() ?? []).map((e) => {
        const st = e.name === a.name ? a.ipam : (e.app as { ipam?: IpamState } | undefined)?.ipam;
        return {
          Peer: e.name,
          Nickname: e.nickname,
          Size: st ? spanSize(st.owned) : 0,
          Free: st?.free ?? 0,
          Asking: !!st?.want,
          Spans: st?.owned.map(spanText) ?? [],
        };
      }),
      Owned: a.allocator
        ? a.podEntries().map((e) => ({
            ContainerID: e.containerId,
            Ifname: e.ifname,
            Address: withPrefix(e.address, a.cfg.range),
            Pod: e.pod ?? null,
          }))
        : [],
    },
  };
}

/**
 * Where a password rotation stands, as this node sees it (net/crypto/rotation.ts): how
 * many passwords it holds, which peers hold its next one, whether the old may go.
 */
function rotationReport(a: Agent) {
  const r = a.router!;
  const ours = r.passwordFingerprints;
  const st = rotationStatus(ours, r.topology.entries());
  return {
    Passwords: ours.length,
    Rotating: st.rotating,
    HoldingNext: st.rotating ? st.holdingNext.length : null,
    WaitingFor: st.rotating ? st.waitingFor : [],
    OldCanBeDropped: st.oldCanBeDropped,
  };
}

function rotationText(a: Agent): string | undefined {
  const r = a.router!;
  const ours = r.passwordFingerprints;
  if (ours.length < 2) return undefined;
  const entries = r.topology.entries();
  const st = rotationStatus(ours, entries);
  if (st.oldCanBeDropped)
    return `all ${entries.length} peers hold the next password: give every node only the next one`;
  return `${st.holdingNext.length} of ${entries.length} peers hold the next password (waiting for ${st.waitingFor.join(", ")})`;
}

/**
 * Weave's per-connection attributes. With a password the mesh connection is encrypted
 * (Noise) and so is the pod traffic to that peer (WireGuard): `encrypted` is both, and
 * `wireguard` says through which implementation, with the tunnel's last handshake.
 */
function connectionAttrs(a: Agent, c: { name?: string; encrypted: boolean; password?: number }) {
  const dp = c.name ? a.dataPath(c.name) : undefined;
  const base = {
    name: dp?.path ?? "fastdp",
    ...(dp?.path === "sleeve" ? { sleeveReason: dp.reason, sleeveSince: new Date(dp.since).toISOString() } : {}),
    mtu: a.bridge?.mtu,
    encrypted: c.encrypted,
    ...(c.password === undefined ? {} : { password: c.password === 1 ? "next" : "current" }),
  };
  const t = a.encryption?.tunnel(c.name);
  if (!t) return base;
  return {
    ...base,
    encrypted: c.encrypted && !t.skipped,
    wireguard: t.wireguard,
    device: t.device,
    handshakeAgoS: t.handshakeAgoS ?? null,
    rxBytes: t.rxBytes,
    txBytes: t.txBytes,
    ...(t.skipped ? { noTunnel: t.skipped } : {}),
  };
}

/**
 * Every reachable peer's data path (ours; Weave had only the connections' Attrs): the
 * fast path, or the sleeve, directly or through a neighbour when there is no direct
 * connection (`Via`), with why and since when.
 */
function dataPaths(a: Agent) {
  const t = a.router?.topology;
  if (!t) return [];
  return [...t.reachable()]
    .filter((n) => n !== a.name)
    .sort()
    .map((n) => {
      const dp = a.dataPath(n);
      const sleeve = dp.path === "sleeve" ? dp : undefined;
      return {
        Name: n,
        NickName: t.get(n)?.nickname ?? "",
        Path: dp.path,
        ...(sleeve?.via ? { Via: sleeve.via, ViaNickName: sleeve.viaNickname } : {}),
        ...(sleeve ? { Reason: sleeve.reason, Since: new Date(sleeve.since).toISOString() } : {}),
      };
    });
}

const wgText = (impl: string | undefined) =>
  impl === "kernel" ? "kernel WireGuard" : impl === "userspace" ? "wireguard-go (userspace)" : "WireGuard starting";

const kv = (rows: [string, string][]) => `${rows.map(([k, v]) => `${k.padStart(15)}: ${v}`).join("\n")}\n`;

export function statusText(a: Agent): string {
  const rows: [string, string][] = [["Version", VERSION]];
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
      ["Encryption", r.encrypted ? "enabled" : "disabled"],
      ...(rotationText(a) ? [["Rotation", rotationText(a)!] as [string, string]] : []),
      ...(a.encryption
        ? [["WireGuard", `${wgText(a.encryption.impl)}, weave-wg (pod traffic between nodes)`] as [string, string]]
        : []),
      ["PeerDiscovery", a.cfg.discovery === false ? "disabled" : "enabled"],
      ["Targets", String(r.explicitTargets().length)],
      ["Connections", `${conns.length}${states.length ? ` (${states.join(", ")})` : ""}`],
      ["Peers", `${t.size} (with ${edges} established connections, ${t.reachable().size} reachable)`],
    );
    if (a.datapathErrors.length) rows.push(["Datapath", `errors: ${a.datapathErrors.join("; ")}`]);
    const sleeve = sleeveText(a);
    if (sleeve) rows.push(["Sleeve", sleeve]);
  }
  rows.push(
    ["Service", "ipam"],
    ["Status", a.ready ? "ready" : a.reason],
    ["Range", formatCidr(a.cfg.range)],
    ["DefaultSubnet", formatCidr(a.cfg.range)],
  );
  if (a.bridge) rows.push(["Bridge", `${a.bridge.name} ${a.bridge.cidr} mtu ${a.bridge.mtu}`]);
  if (a.allocator)
    rows.push(["Pod IPs", `${a.podEntries().length} held, ${a.allocator.capacity - a.allocator.active} free`]);
  return kv(rows);
}

/** One line per peer with its connections, like `weave status peers`. */
export function peersText(a: Agent): string {
  const t = a.router?.topology;
  if (!t) return "mesh not running\n";
  const reach = t.reachable();
  const lines: string[] = [];
  for (const e of t.entries().sort((x, y) => x.nickname.localeCompare(y.nickname))) {
    let mark = "";
    if (e.name === a.name) mark = " [this peer]";
    else if (!reach.has(e.name)) mark = " [unreachable]";
    lines.push(`${e.name}(${e.nickname})${mark} ${e.addresses.join(",")} pods=${e.pods.length}`);
    for (const n of e.connections) {
      const other = t.get(n);
      lines.push(
        `   -> ${n}(${other?.nickname ?? "?"}) ${other?.connections.includes(e.name) ? "established" : "one-sided"}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

export function connectionsText(a: Agent): string {
  const r = a.router;
  if (!r) return "mesh not running\n";
  return `${r
    .connections()
    .map((c) => {
      const t = c.state === "established" ? a.encryption?.tunnel(c.name) : undefined;
      const state = `${c.state}${c.encrypted && !t?.skipped ? " encrypted" : ""}`;
      const hs = t?.handshakeAgoS === undefined ? "no handshake yet" : `handshake ${t.handshakeAgoS}s ago`;
      const wg = t ? (t.skipped ? ` (no tunnel: ${t.skipped})` : ` (${wgText(t.wireguard)}, ${hs})`) : "";
      const path = c.state === "established" && c.name ? ` ${pathText(a.dataPath(c.name))}` : "";
      return `${c.outbound ? "->" : "<-"} ${c.address.padEnd(22)} ${state.padEnd(22)} ${c.info}${path}${wg}`;
    })
    .concat(routedText(a))
    .join("\n")}\n`;
}

/** The sleeve's state for `weave status`: not running (and why), or how many peers it carries. */
function sleeveText(a: Agent): string | undefined {
  const s = a.sleeve;
  if (!s) return undefined;
  if (!s.active) return s.failure || "starting";
  const on = s.paths.all().filter((p) => p.path === "sleeve");
  const routed = on.filter((p) => p.via).length;
  return `UDP 6783, ${on.length} peer(s) on it${routed ? ` (${routed} through another peer)` : ""}`;
}

const pathText = (dp: ReturnType<Agent["dataPath"]>) => (dp.path === "sleeve" ? `sleeve (${dp.reason})` : "fastdp");

/** Peers with no direct connection, reached over a neighbour's sleeve. */
function routedText(a: Agent): string[] {
  const t = a.router?.topology;
  if (!t) return [];
  const lines: string[] = [];
  for (const n of [...t.reachable()].sort()) {
    const dp = a.dataPath(n);
    if (n === a.name || dp.path !== "sleeve" || !dp.via) continue;
    const who = `${n}(${t.get(n)?.nickname ?? "?"})`;
    lines.push(`~> ${"(routed)".padEnd(22)} ${`via ${dp.viaNickname}`.padEnd(22)} ${who} sleeve (${dp.reason})`);
  }
  return lines;
}

const spanText = ([s, e]: Span) => (e - s === 1 ? numToIp(s) : `${numToIp(s)}-${numToIp(e - 1)}`);

/** `weave status ipam`: the range, every peer's space and how full it is, what is pending, why not ready. */
export function ipamText(a: Agent): string {
  const lines = [
    `Range: ${formatCidr(a.cfg.range)} (${a.allocator.capacity} addresses)${a.ipam.ring ? `, ring ${a.ipam.ring}` : ""}`,
  ];
  lines.push(`Status: ${a.ipamWaiting ? a.ipamWaiting : a.bridge ? "ready" : "waiting for space"}`);
  for (const c of a.ipamConflicts) lines.push(`Conflict: ${c}`);
  const t = a.router?.topology;
  const reach = t?.reachable();
  const rows: { who: string; st: IpamState | undefined; self: boolean; reachable: boolean }[] = [
    { who: `${a.name}(${a.cfg.nickname})`, st: a.ipam, self: true, reachable: true },
  ];
  for (const e of t?.entries() ?? [])
    if (e.name !== a.name)
      rows.push({
        who: `${e.name}(${e.nickname})`,
        st: (e.app as { ipam?: IpamState } | undefined)?.ipam,
        self: false,
        reachable: !!reach?.has(e.name),
      });
  lines.push("", `${"PEER".padEnd(34)}${"OWNS".padStart(9)}${"FREE".padStart(9)}  NOTES`);
  for (const r of rows) {
    const owns = r.st ? spanSize(r.st.owned) : 0;
    const notes = [
      r.self ? "this peer" : r.reachable ? "" : "unreachable",
      r.st?.want ? "asking for space" : "",
      r.st?.gifts.length ? `giving ${r.st.gifts.map((g) => `${spanSize([g.span])} to ${g.to}`).join(", ")}` : "",
      r.st && !r.st.ring ? "not in a ring yet" : "",
    ].filter(Boolean);
    lines.push(
      `${r.who.padEnd(34)}${String(owns).padStart(9)}${String(r.st?.free ?? 0).padStart(9)}  ${notes.join("; ")}`,
    );
    if (r.st?.owned.length)
      lines.push(
        `${"".padEnd(36)}${r.st.owned.slice(0, 4).map(spanText).join(", ")}${r.st.owned.length > 4 ? `, ... (${r.st.owned.length} spans)` : ""}`,
      );
  }
  lines.push("", "ALLOCATIONS");
  for (const e of a.allocator.list())
    lines.push(
      `${withPrefix(e.address, a.cfg.range).padEnd(18)} ${e.containerId} ${e.ifname}${e.pod ? ` ${e.pod}` : ""}`,
    );
  return `${lines.join("\n")}\n`;
}
