/**
 * Checks from active probes: pings on one node, between nodes, at full size with
 * don't-fragment, TCP connects to 6783, and the firewall of each node for TCP 6783 and
 * UDP 6784. Failures between pairs are blamed on the one node they all involve
 * (result.ts `blame`), and the fix follows what else is known about that node: its
 * agent down, a firewall rule found, or else the datapath itself.
 *
 * UDP 6784 cannot be probed directly (nothing answers on it but the kernel's VXLAN), so
 * it is inferred: pods of two nodes that cannot ping each other while their agents are
 * connected over TCP 6783 have their VXLAN traffic lost between them, and a node whose
 * nftables rules drop udp dport 6784 is named outright.
 */
import { localNodes, blame, list, plural, result } from "./result.ts";
import type { CheckResult, Facts, NodeFacts, PortDrop, Probe } from "./types.ts";

const node = (f: Facts, name: string | undefined) => f.nodes.find((n) => n.name === name);
const pairText = (p: Probe) => `${p.from} -> ${p.to} (${p.src} -> ${p.dst}${p.detail ? `: ${p.detail}` : ""})`;
const drops = (n: NodeFacts | undefined, proto: "tcp" | "udp", port: number, certain: boolean): PortDrop[] =>
  (n?.firewall?.drops ?? []).filter((d) => d.proto === proto && d.port === port && d.certain === certain);
const encrypted = (n: NodeFacts | undefined) => {
  const e = n?.agent.report?.Router?.Encryption;
  return e === true || e === "enabled";
};
const ruleText = (d: PortDrop) => `"${d.rule}" (table ${d.table}, chain ${d.chain})`;
const agentDown = (n: NodeFacts | undefined) =>
  !!n && (n.agent.running === false || !!n.agent.error || n.agent.ready === false);
const sees = (a: NodeFacts, b: NodeFacts) =>
  a.agent.report?.Router?.Peers.some((p) => p.NickName === b.name && p.Reachable) ?? false;

/** Why pod traffic involving `n` may fail, as a fix. */
function datapathFix(f: Facts, n: NodeFacts | undefined): string {
  if (!n) return "see udp-6784, mtu and mesh-peers for the nodes named";
  if (agentDown(n))
    return `${f.hints.startAgent(n.name)} (see agent): peers drop a node from their datapath while its agent is away`;
  const udp = drops(n, "udp", 6784, true);
  if (udp.length) return `remove the firewall rule on ${n.name} that drops UDP 6784 (see udp-6784)`;
  return `see udp-6784 and mesh-peers for ${n.name}; compare ${f.hints.onNode(n.name)}bridge fdb show dev vxlan-6784 with its peers' addresses`;
}

export function checkSameNodePing(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    const probes = f.probes.filter((p) => p.kind === "ping-local" && p.from === n.name);
    if (!probes.length) continue;
    const failed = probes.filter((p) => !p.ok);
    if (failed.length) {
      const bridge = n.agent.report?.Bridge?.Name ?? "weave";
      const fix = agentDown(n)
        ? `${f.hints.startAgent(n.name)}: it keeps the bridge`
        : `look at the bridge: ${f.hints.onNode(n.name)}bridge link show ` +
          `(every pod's vethwepl* must be a forwarding port of ${bridge}), and at pod-route / devices`;
      out.push(
        result(
          "ping-same-node",
          "fail",
          n.name,
          `${failed.length} of ${probes.length} pings on the node failed: ${list(
            failed.map((p) => `${p.src} -> ${p.dst}${p.detail ? ` (${p.detail})` : ""}`),
            4,
          )}`,
          fix,
        ),
      );
    } else
      out.push(
        result(
          "ping-same-node",
          "pass",
          n.name,
          `${plural(probes.length, "ping")} on the node went through (${list(
            probes.map((p) => `${p.src} -> ${p.dst}`),
            3,
          )})`,
        ),
      );
  }
  return out;
}

function pairCheck(
  f: Facts,
  kind: "ping" | "ping-df",
  name: string,
  fixFor: (n: NodeFacts | undefined) => string,
  what: (p: Probe[]) => string,
): CheckResult[] {
  const probes = f.probes.filter((p) => p.kind === kind);
  if (!probes.length) return [];
  const failed = probes.filter((p) => !p.ok && p.cachedMtu === undefined);
  const cached = probes.filter((p) => !p.ok && p.cachedMtu !== undefined);
  const out: CheckResult[] = [];
  for (const from of new Set(cached.map((p) => p.from))) {
    const mine = cached.filter((p) => p.from === from);
    out.push(
      result(
        name,
        "warn",
        from,
        `not testable from ${from}: ${list(
          mine.map((p) => `${p.src} has a path MTU of ${p.cachedMtu} cached for ${p.dst}`),
          3,
        )}; full-size frames to it were dropped within the last 10 minutes`,
        `if the MTU problem is fixed, clear the cache and run doctor again: ${f.hints.onNode(mine[0]!.src)}ip route flush cache`,
      ),
    );
  }
  if (!failed.length) {
    const nodes = new Set(probes.flatMap((p) => [p.from, p.to]));
    const passed = probes.filter((p) => p.ok);
    if (passed.length)
      out.unshift(
        result(
          name,
          "pass",
          undefined,
          `${plural(passed.length, "ping")} between ${plural(nodes.size, "node")} went through${what(passed)}`,
        ),
      );
    return out;
  }
  return out.concat(
    blame(failed).map((g) => {
      const n = node(f, g.node);
      const subject = g.node
        ? `${plural(g.pairs.length, "ping")} to or from ${g.node} failed`
        : `${plural(g.pairs.length, "ping")} failed`;
      return result(
        name,
        "fail",
        g.node,
        `${subject} (${g.pairs.length} of ${probes.length}): ${list(g.pairs.map(pairText), 4)}`,
        fixFor(n),
      );
    }),
  );
}

export function checkCrossNodePing(f: Facts): CheckResult[] {
  return pairCheck(
    f,
    "ping",
    "ping-cross-node",
    (n) => datapathFix(f, n),
    () => "",
  );
}

export function checkFullSizePing(f: Facts): CheckResult[] {
  return pairCheck(
    f,
    "ping-df",
    "ping-full-size",
    (n) =>
      n
        ? `an MTU on the path to ${n.name} is too small for full-size frames: see mtu for ${n.name}; every underlay must carry the overlay MTU + 50 bytes`
        : "see mtu: every underlay must carry the overlay MTU + 50 bytes",
    (p) =>
      ` with don't-fragment at full size (${list([...new Set(p.map((x) => x.detail.replace(/^.*?(\d+ bytes).*$/, "$1")).filter(Boolean))])})`,
  );
}

/** Per-node verdicts for one port, from the firewall and (for TCP) from probes. */
function portCheck(
  f: Facts,
  proto: "tcp" | "udp",
  port: number,
  inferred: { node?: string; pairs: Probe[] }[],
): CheckResult[] {
  const name = `${proto}-${port}`;
  const out: CheckResult[] = [];
  const blamed = new Map<string, Probe[]>();
  const unblamed: Probe[] = [];
  for (const g of inferred) {
    if (g.node) blamed.set(g.node, g.pairs);
    else unblamed.push(...g.pairs);
  }
  for (const n of f.nodes) {
    const sure = drops(n, proto, port, true);
    const maybe = drops(n, proto, port, false);
    const probes = blamed.get(n.name);
    const looked = !n.remote || f.probes.some((p) => p.to === n.name || p.from === n.name);
    if (!looked) continue;
    if (sure.length) {
      const d = sure[0]!;
      const failed = probes ? `; ${probes.length} probe(s) failed` : "";
      const why = `nftables on ${n.name} drops ${proto.toUpperCase()} ${port}: ${list(sure.map(ruleText), 2)}${failed}`;
      const fix =
        `remove the rule or accept ${proto} dport ${port} from the other nodes before it: ` +
        `${f.hints.onNode(n.name)}nft -a list table ${d.table} (then nft delete rule ${d.table} ${d.chain} handle N)`;
      out.push(result(name, "fail", n.name, why, fix));
    } else if (probes) {
      const peers = list([...new Set(probes.map((p) => (p.from === n.name ? p.to : p.from)))]);
      const why =
        proto === "udp"
          ? `pods cannot cross between ${n.name} and ${peers} though their agents are connected over TCP 6783: ` +
            (encrypted(n)
              ? `VXLAN (UDP ${port}) inside WireGuard (UDP 6785 on the underlay) is lost between them (see tunnels)`
              : `VXLAN (UDP ${port}) is lost between them`)
          : `TCP connects to ${port} failed: ${list(probes.map(pairText), 4)}`;
      const fix =
        agentDown(n) && proto === "tcp"
          ? `${f.hints.startAgent(n.name)}: nothing listens on ${port} without it`
          : `find what drops ${proto.toUpperCase()} ${port} between the nodes: no nftables rule on the nodes does, ` +
            `so look at iptables (${f.hints.onNode(n.name)}iptables-save), ` +
            "security groups or a firewall between the nodes";
      out.push(result(name, "fail", n.name, why, fix));
    } else if (maybe.length) {
      out.push(
        result(
          name,
          "warn",
          n.name,
          `nftables on ${n.name} may drop ${proto.toUpperCase()} ${port}: ${list(maybe.map(ruleText), 2)}`,
          `make sure ${proto} dport ${port} from the other nodes is accepted before it (${f.hints.onNode(n.name)}nft -a list table ${maybe[0]!.table})`,
        ),
      );
    } else if (!n.remote) {
      const firewall = n.firewall
        ? n.firewall.error
          ? `nftables not readable (${n.firewall.error})`
          : "no nftables rule drops it"
        : "";
      const probed = f.probes.filter(
        (p) => p.kind === (proto === "tcp" ? "tcp-6783" : "ping") && (p.to === n.name || p.from === n.name),
      ).length;
      out.push(
        result(
          name,
          "pass",
          n.name,
          [
            firewall,
            probed
              ? `${plural(probed, proto === "tcp" ? "TCP connect" : "ping")}${proto === "udp" ? " over VXLAN" : ""} to or from it got through`
              : "",
          ]
            .filter(Boolean)
            .join("; ") || "nothing found against it",
        ),
      );
    }
  }
  if (unblamed.length)
    out.push(
      result(
        name,
        "fail",
        undefined,
        `between ${list([...new Set(unblamed.flatMap((p) => [p.from, p.to]))])}: ${list(unblamed.map(pairText), 4)}`,
        `find what drops ${proto.toUpperCase()} ${port} between these nodes (nftables, iptables, a firewall between them)`,
      ),
    );
  return out;
}

export function checkTcp6783(f: Facts): CheckResult[] {
  const failed = f.probes.filter((p) => p.kind === "tcp-6783" && !p.ok);
  return portCheck(f, "tcp", 6783, blame(failed));
}

export function checkUdp6784(f: Facts): CheckResult[] {
  // Only pairs whose agents are both up and see each other: otherwise the agent or mesh checks explain the failure.
  const failed = f.probes.filter((p) => {
    if (p.kind !== "ping" || p.ok) return false;
    const [a, b] = [node(f, p.from), node(f, p.to)];
    if (!a || !b || agentDown(a) || agentDown(b)) return false;
    return b.remote ? sees(a, b) : sees(a, b) && sees(b, a);
  });
  return portCheck(f, "udp", 6784, blame(failed));
}
