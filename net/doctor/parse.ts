/**
 * Pure readers of what doctor's probes print: a raw HTTP/1.x answer, `ip -j` JSON,
 * `nft list ruleset` text, agent log lines.
 *
 * The firewall reader works on nft's text, one rule per line, because that is the same
 * on every nft version, while its JSON grew fields across versions. It is conservative:
 * a drop or reject rule whose port match includes the port (a value, a `{ set }`, a
 * range, `!=` handled) is a certain drop; one with no protocol or port match at all
 * (`ip saddr X drop`, a bare `drop`) may drop it; a filter chain hooked on input,
 * output or forward with `policy drop` may too. Rules of other protocols do not count.
 */
import type { Addr, AgentReport, Link, PortDrop, Route } from "./types.ts";

/** Status code and body of a raw HTTP/1.x response; undefined when it is not one. */
export function parseHttp(raw: string): { status: number; body: string } | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r?\n/.exec(raw);
  if (!m) return undefined;
  const split = raw.search(/\r?\n\r?\n/);
  const body = split < 0 ? "" : raw.slice(split).replace(/^\r?\n\r?\n/, "");
  return { status: Number(m[1]), body };
}

/** The agent's /report, if the text is one. */
export function parseReport(text: string): AgentReport | undefined {
  try {
    const r = JSON.parse(text) as AgentReport;
    return r && typeof r === "object" && typeof r.Ready === "boolean" && r.IPAM && typeof r.IPAM === "object"
      ? r
      : undefined;
  } catch {
    return undefined;
  }
}

type IpLink = {
  ifname: string;
  flags?: string[];
  mtu: number;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: { port?: number; local?: string } };
};

/** `ip -j -d link show`. */
export function parseLinks(json: string): Link[] {
  return (JSON.parse(json) as IpLink[]).map((l) => ({
    name: l.ifname,
    kind: l.linkinfo?.info_kind,
    up: l.flags?.includes("UP") ?? false,
    mtu: l.mtu,
    ...(l.master ? { master: l.master } : {}),
    ...(l.linkinfo?.info_kind === "vxlan"
      ? { vxlanPort: l.linkinfo.info_data?.port, vxlanLocal: l.linkinfo.info_data?.local }
      : {}),
  }));
}

/** `ip -j -4 addr show`. */
export function parseAddrs(json: string): Addr[] {
  const out: Addr[] = [];
  for (const l of JSON.parse(json) as {
    ifname: string;
    addr_info?: { family: string; local: string; prefixlen: number }[];
  }[]) {
    for (const a of l.addr_info ?? [])
      if (a.family === "inet") out.push({ ifname: l.ifname, ip: a.local, prefix: a.prefixlen });
  }
  return out;
}

/** `ip -j -4 route show table all`; "default" becomes 0.0.0.0/0, a host address gets /32. */
export function parseRoutes(json: string): Route[] {
  return (JSON.parse(json) as { dst: string; dev?: string; gateway?: string; table?: string; type?: string }[]).map(
    (r) => ({
      dst: r.dst === "default" ? "0.0.0.0/0" : r.dst.includes("/") ? r.dst : `${r.dst}/32`,
      ...(r.dev ? { dev: r.dev } : {}),
      ...(r.gateway ? { gateway: r.gateway } : {}),
      ...(r.table ? { table: r.table } : {}),
      ...(r.type ? { type: r.type } : {}),
    }),
  );
}

const WATCHED: { proto: "tcp" | "udp"; port: number }[] = [
  { proto: "tcp", port: 6783 },
  { proto: "udp", port: 6784 },
  // WireGuard, with a password (the tunnels check)
  { proto: "udp", port: 6785 },
];

/**
 * The encrypted datapath's own fail-closed table (net/host/wg-fail-closed.ts): it drops
 * plain VXLAN that is not inside weave-wg, which is what it is for, not a firewall in
 * the way. Its rules are not reported.
 */
export const OWN_TABLES = new Set(["inet weave-wg"]);

/** Does an nft port expression (`6784`, `{ 22, 6783 }`, `6000-7000`) include `port`? */
export function portExprIncludes(expr: string, port: number): boolean {
  const items = expr
    .replace(/[{}]/g, " ")
    .split(/[\s,]+/)
    .filter(Boolean);
  return items.some((it) => {
    const range = /^(\d+)-(\d+)$/.exec(it);
    if (range) return port >= Number(range[1]) && port <= Number(range[2]);
    return /^\d+$/.test(it) && Number(it) === port;
  });
}

/** Rules of `nft list ruleset` that drop or may drop TCP 6783, UDP 6784 or UDP 6785 (outside our own tables). */
export function parseNftDrops(text: string): PortDrop[] {
  const out: PortDrop[] = [];
  let table = "",
    chain = "",
    hook = "";
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    const tableStart = /^table (\S+) (\S+) \{/.exec(line);
    const chainStart = /^chain (\S+) \{/.exec(line);
    const filterHook = /^type filter hook (\w+)\b.*policy (\w+);/.exec(line);
    if (tableStart) [table, chain, hook] = [`${tableStart[1]} ${tableStart[2]}`, "", ""];
    else if (OWN_TABLES.has(table)) continue;
    else if (chainStart) [chain, hook] = [chainStart[1]!, ""];
    else if (filterHook) {
      hook = filterHook[1]!;
      if (filterHook[2] === "drop" && ["input", "output", "forward"].includes(hook)) {
        for (const w of WATCHED) out.push({ ...w, table, chain, rule: `policy drop (hook ${hook})`, certain: false });
      }
    } else if (/^type /.test(line)) hook = /hook (\w+)/.exec(line)?.[1] ?? "";
    else if (chain && /\b(drop|reject)\b/.test(line) && !/^(set|map|elements|flags|counter|quota) /.test(line)) {
      for (const d of ruleDrops(line)) out.push({ ...d, table, chain, rule: line });
    }
  }
  return out;
}

/** Which watched ports one drop/reject rule hits, and whether for certain. */
function ruleDrops(rule: string): { proto: "tcp" | "udp"; port: number; certain: boolean }[] {
  const ports = [...rule.matchAll(/\b(tcp|udp|th) dport (!= )?(\{[^}]*\}|\S+)/g)];
  const protoOnly = /\b(?:meta l4proto|ip protocol) (?:\{[^}]*\}|(\w+))/.exec(rule);
  const out: { proto: "tcp" | "udp"; port: number; certain: boolean }[] = [];
  for (const w of WATCHED) {
    if (ports.length) {
      const hit = ports.every((m) => (m[1] === "th" || m[1] === w.proto) && portExprIncludes(m[3]!, w.port) !== !!m[2]);
      if (hit) out.push({ ...w, certain: onlyPortAndProto(rule) });
    } else if (protoOnly) {
      const protos = protoOnly[0].replace(/^.*?(l4proto|protocol) /, "");
      if (new RegExp(`\\b${w.proto}\\b`).test(protos)) out.push({ ...w, certain: onlyPortAndProto(rule) });
    } else if (!/\b(tcp|udp|icmp|icmpv6|th|sctp)\b|\bct state\b/.test(rule)) out.push({ ...w, certain: false });
  }
  return out;
}

/** A rule that matches on nothing but protocol and ports (and counts) drops all of that traffic. */
function onlyPortAndProto(rule: string): boolean {
  const rest = rule
    .replace(/\b(tcp|udp|th) [ds]port (!= )?(\{[^}]*\}|\S+)/g, "")
    .replace(/\b(meta l4proto|ip protocol) (\{[^}]*\}|\S+)/g, "")
    .replace(/\bcounter( packets \d+ bytes \d+)?/g, "")
    .replace(/\blog( prefix "[^"]*")?/g, "")
    .replace(/\b(drop|reject( with .*)?)$/, "")
    .trim();
  return rest === "";
}

const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) /;
const ERRORISH =
  /\b(error|errors|failed|fail|cannot|refused|lost|dropping|conflict|conflicts|unexpected|exited|denied|timed out|bad preamble|forgot peer)\b/i;

/** Agent log lines that report trouble, written within `windowMs` before `now`. */
export function recentErrorLines(lines: string[], now: number, windowMs: number): string[] {
  return lines.filter((l) => {
    const m = STAMP.exec(l);
    if (!m) return false;
    const t = Date.parse(m[1]!);
    return now - t <= windowMs && ERRORISH.test(l.slice(m[0].length));
  });
}

/** Lines of the log that say a peer speaks another mesh protocol version. */
/** Log lines of a peer refused for its protocol version or its password (see docs/protocol.md). */
export const MESH_REFUSAL =
  /speaks mesh protocol versions|has no password: refused|has a password and we have none|handshake with \S+ failed: wrong password/;

export function protocolMismatchLines(lines: string[]): string[] {
  return lines.filter((l) => MESH_REFUSAL.test(l));
}

/** `s` on one line: whitespace folded, cut at `max` characters. */
export const oneLine = (s: string, max = 160) => {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
};
