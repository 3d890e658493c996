/**
 * The encrypted datapath's tunnels (docs/datapath.md, "Encrypted datapath"): with a
 * password every pair of peers has a live WireGuard tunnel. Judged from each agent's
 * /report, per established connection (`Attrs`): `encrypted`, no `noTunnel`, and a last
 * handshake under 3 minutes. WireGuard re-handshakes every 2 minutes while packets
 * flow, and the agents' persistent keepalive (25 s) keeps them flowing, so an older
 * handshake means no session at all (a session is refused after 180 s).
 *
 * Encryption off everywhere passes (saying so); some agents with a password and some
 * without fails: those refuse each other. A failed pair is blamed on the one node every
 * failed pair involves (result.ts `blame`), so one node whose UDP 6785 is blocked is
 * named once.
 */
import { blame, list, nodeByIp, plural, result } from "./result.ts";
import type { CheckResult, ConnectionAttrs, Facts, NodeFacts, PortDrop } from "./types.ts";

/** A handshake older than this (seconds) means the tunnel carries nothing. */
export const HANDSHAKE_STALE_S = 180;
export const WG_PORT = 6785;

const NAME = "tunnels";
type Problem = "notunnel" | "plain" | "device" | "handshake" | "attrs";
type Side = { from: string; to: string; problem?: Problem; text: string; ageS?: number; wireguard?: string };

const encryptionOn = (n: NodeFacts) => {
  const e = n.agent.report?.Router?.Encryption;
  return e === true || e === "enabled";
};

/** The peer of a connection: the nickname in its Info ("name(nickname)"), else the node at its address. */
function peerOf(f: Facts, c: { Address: string; Info: string }): string {
  const nick = /\(([^()]+)\)$/.exec(c.Info)?.[1];
  return nick ?? nodeByIp(f, c.Address.replace(/:\d+$/, ""))?.name ?? c.Address;
}

const wgText = (impl?: string) =>
  impl === "kernel" ? "kernel WireGuard" : impl === "userspace" ? "wireguard-go" : (impl ?? "WireGuard");

/** What the agent of `from` says of its tunnel to `to`. */
function side(from: string, to: string, a: ConnectionAttrs | null | undefined): Side {
  const s = { from, to };
  if (!a) return { ...s, problem: "attrs", text: `${from} reports no attributes for its connection to ${to}` };
  if (a.noTunnel) return { ...s, problem: "notunnel", text: `${from} has no tunnel to ${to}: ${a.noTunnel}` };
  if (!a.encrypted) return { ...s, problem: "plain", text: `${from}'s connection to ${to} is not encrypted` };
  if (!a.wireguard)
    return { ...s, problem: "device", text: `${from}'s WireGuard device is not up (no tunnel to ${to} yet)` };
  const age = a.handshakeAgoS;
  if (age === null || age === undefined)
    return {
      ...s,
      problem: "handshake",
      text: `no handshake yet between ${from} and ${to} (seen from ${from}, ${wgText(a.wireguard)})`,
      wireguard: a.wireguard,
    };
  if (age > HANDSHAKE_STALE_S)
    return {
      ...s,
      problem: "handshake",
      text: `last handshake between ${from} and ${to} ${age} s ago (seen from ${from}): no live session (over ${HANDSHAKE_STALE_S} s)`,
      ageS: age,
      wireguard: a.wireguard,
    };
  return { ...s, text: `handshake ${age} s ago`, ageS: age, wireguard: a.wireguard };
}

const ruleText = (n: string, d: PortDrop) => `nftables on ${n} drops UDP ${WG_PORT}: "${d.rule}" (table ${d.table})`;

export function checkTunnels(f: Facts): CheckResult[] {
  const routers = f.nodes.filter((n) => n.agent.report?.Router);
  if (!routers.length) return [];
  const on = routers.filter(encryptionOn);
  const off = routers.filter((n) => !encryptionOn(n));
  if (!on.length)
    return [
      result(
        NAME,
        "pass",
        undefined,
        `encryption is off (no WEAVE_PASSWORD on ${plural(routers.length, "agent")}): no tunnels to check; pod traffic between nodes is not encrypted`,
      ),
    ];

  const out: CheckResult[] = [];
  if (off.length) {
    // the minority is the odd one out; on a tie, the unencrypted ones
    const odd = off.length <= on.length ? off : on;
    const state = odd === off ? "off" : "on";
    for (const n of odd)
      out.push(
        result(
          NAME,
          "fail",
          n.name,
          `encryption ${state} on ${n.name} while ${state === "off" ? "on" : "off"} on ${list((odd === off ? on : off).map((x) => x.name))}: nodes with and without a password refuse each other`,
          "give every agent the same WEAVE_PASSWORD (weave install --password-secret NAME puts it in every agent's environment; " +
            `a lab: weave lab up with WEAVE_PASSWORD or --password-file), then restart ${n.name}'s agent`,
        ),
      );
  }

  // every established connection between encrypted agents, from each side that reports it
  const pairs = new Map<string, Side[]>();
  const key = (a: string, b: string) => [a, b].sort().join(" <-> ");
  for (const n of on) {
    for (const c of n.agent.report!.Router!.Connections) {
      if (c.State !== "established") continue;
      const peer = peerOf(f, c);
      if (peer === n.name) continue;
      const k = key(n.name, peer);
      pairs.set(k, [...(pairs.get(k) ?? []), side(n.name, peer, c.Attrs)]);
    }
  }
  const failed: { from: string; to: string; sides: Side[] }[] = [];
  const live: { k: string; sides: Side[] }[] = [];
  for (const [k, sides] of pairs) {
    const bad = sides.filter((s) => s.problem);
    if (bad.length) failed.push({ from: bad[0]!.from, to: bad[0]!.to, sides: bad });
    else live.push({ k, sides });
  }

  for (const g of blame(failed)) {
    const nodes = [...new Set(g.pairs.flatMap((p) => [p.from, p.to]))];
    const sides = g.pairs.flatMap((p) => p.sides);
    const problems = new Set(sides.map((s) => s.problem));
    const walls = nodes.flatMap((name) => {
      const n = f.nodes.find((x) => x.name === name);
      return (n?.firewall?.drops ?? [])
        .filter((d) => d.proto === "udp" && d.port === WG_PORT)
        .map((d) => ruleText(name, d));
    });
    const evidence = [
      `${plural(g.pairs.length, "pair")} without a live tunnel: ${list(
        sides.map((s) => s.text),
        4,
      )}`,
      ...walls.slice(0, 2),
    ].join("; ");
    const logs = list(
      nodes.map((n) => f.hints.agentLogs(n)),
      3,
    );
    const fixes: string[] = [];
    if (problems.has("handshake") || problems.has("device"))
      fixes.push(
        `open UDP ${WG_PORT} between ${g.node ? `${g.node} and the other nodes` : list(nodes)} (both ways: WireGuard listens and sends on ${WG_PORT}` +
          `${g.node ? `; ${f.hints.onNode(g.node)}nft list ruleset` : ""}), then check the agents' logs (${logs}): ` +
          "'wireguard:' lines say whether wireguard-go runs and which peer has no key yet; a wrong password shows as a mesh refusal (see mesh-protocol)",
      );
    if (problems.has("notunnel"))
      fixes.push(
        `read the agents' logs (${logs}) for 'wireguard: no tunnel to': a peer whose key is not known yet gets its tunnel once its entry arrives over the mesh; ` +
          "an agent of an older weave gossips no key: upgrade it",
      );
    if (problems.has("plain") || problems.has("attrs"))
      fixes.push(
        "run the same weave version with the same WEAVE_PASSWORD on every node (an agent that reports no tunnel attributes is older)",
      );
    out.push(result(NAME, "fail", g.node, evidence, fixes.join("; ")));
  }

  if (live.length) {
    const ages = live.flatMap((l) => l.sides.map((s) => s.ageS!));
    const impls = [...new Set(live.flatMap((l) => l.sides.map((s) => wgText(s.wireguard))))];
    const unseen = on.flatMap((a, i) =>
      on.slice(i + 1).filter((b) => !pairs.has(key(a.name, b.name)) && !b.remote && !a.remote),
    ).length;
    out.push(
      result(
        NAME,
        "pass",
        undefined,
        `${plural(live.length, "pair")} of peers ${live.length === 1 ? "has a" : "have"} live tunnel${live.length === 1 ? "" : "s"} (${impls.join(", ")}), ` +
          `last handshakes ${Math.min(...ages)}-${Math.max(...ages)} s ago` +
          (unseen
            ? `; ${plural(unseen, "pair")} without a direct mesh connection (their tunnels are not in /report)`
            : ""),
      ),
    );
  } else if (!failed.length && !off.length)
    out.push(
      result(
        NAME,
        "pass",
        undefined,
        `encryption on (${plural(on.length, "agent")}); no established connection between them to have a tunnel yet (see mesh-peers)`,
      ),
    );
  return out;
}
