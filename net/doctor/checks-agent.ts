/**
 * Checks of the agents and what they agree on: running and ready, the mesh, protocol
 * versions, errors in their logs. Mesh results are given per node as the *subject*
 * ("is this node connected with the others"), judged from the other agents' reports,
 * so a stopped or cut-off node is named once instead of every healthy node reporting
 * that it misses it.
 */
import { localNodes, list, nodeByIp, plural, result } from "./result.ts";
import { MESH_REFUSAL, protocolMismatchLines, recentErrorLines } from "./parse.ts";
import type { CheckResult, Facts, NodeFacts } from "./types.ts";

/** How far back log lines count as recent. */
export const LOG_WINDOW_MS = 10 * 60_000;

export function checkAgents(f: Facts): CheckResult[] {
  return localNodes(f).map((n) => {
    const a = n.agent;
    const pid = a.pid ? ` (pid ${a.pid})` : "";
    if (a.running === false)
      return result(
        "agent",
        "fail",
        n.name,
        `the agent is not running${a.pid ? `: pid ${a.pid} is gone` : ""}`,
        f.hints.startAgent(n.name),
      );
    if (a.error)
      return result(
        "agent",
        "fail",
        n.name,
        `the agent's API (127.0.0.1:6784) does not answer: ${a.error}`,
        `${f.hints.startAgent(n.name)}; if it is running, read its log: ${f.hints.agentLogs(n.name)}`,
      );
    if (!a.ready)
      return result(
        "agent",
        "fail",
        n.name,
        `the agent${pid} is running but not ready: ${a.report?.Reason ?? a.statusText ?? "no reason given"}`,
        `see why in ${f.hints.agentLogs(n.name)}; most often it waits for its peers (see mesh-peers) or for address space (see ipam-ready)`,
      );
    return result("agent", "pass", n.name, `running${pid} and ready`);
  });
}

const seesReachable = (observer: NodeFacts, subject: string) =>
  observer.agent.report?.Router?.Peers.some((p) => p.NickName === subject && p.Reachable) ?? false;

export function checkMeshPeers(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  const withRouter = f.nodes.filter((n) => n.agent.report?.Router);
  for (const x of f.nodes) {
    const observers = withRouter.filter((o) => o !== x);
    const own = x.agent.report?.Router;
    if (!observers.length && !own) continue;
    const notSeenBy = observers.filter((o) => !seesReachable(o, x.name)).map((o) => o.name);
    const doesNotSee = own ? withRouter.filter((o) => o !== x && !seesReachable(x, o.name)).map((o) => o.name) : [];
    if (!notSeenBy.length && !doesNotSee.length) {
      if (!own) {
        out.push(result("mesh-peers", "pass", x.name, `reachable from ${list(observers.map((o) => o.name))}`));
        continue;
      }
      const direct = own.Peers.find((p) => p.Name === own.Name)?.Connections.filter((c) => c.Established).length;
      const others = own.Peers.filter((p) => p.Reachable && p.Name !== own.Name).length;
      out.push(
        result(
          "mesh-peers",
          "pass",
          x.name,
          `reaches ${plural(others, "other peer")}${direct !== undefined && direct < others ? ` (${direct} directly, the rest routed)` : ""}`,
        ),
      );
      continue;
    }
    const why =
      x.agent.running === false ? "; its agent is not running" : x.agent.error ? "; its agent does not answer" : "";
    const parts = [
      notSeenBy.length ? `not reachable from ${list(notSeenBy)}` : "",
      doesNotSee.length ? `does not reach ${list(doesNotSee)}` : "",
    ].filter(Boolean);
    const fix =
      x.agent.running === false || x.agent.error
        ? f.hints.startAgent(x.name)
        : `make sure TCP 6783 gets through between ${x.name} and the others (see tcp-6783), then read ${f.hints.agentLogs(x.name)}`;
    out.push(result("mesh-peers", "fail", x.name, parts.join(", ") + why, fix));
  }
  return out;
}

export function checkMeshConnections(f: Facts): CheckResult[] {
  const errors = new Map<string, string[]>();
  const add = (node: string, e: string) => errors.set(node, [...(errors.get(node) ?? []), e]);
  for (const o of f.nodes) {
    for (const c of o.agent.report?.Router?.Connections ?? []) {
      if (c.State !== "failed") continue;
      const target = nodeByIp(f, c.Address.replace(/:\d+$/, ""));
      if (target && target !== o) add(target.name, `${o.name} -> ${c.Address}: ${c.Info}`);
      else add(o.name, `${o.name} -> ${c.Address}${target ? "" : " (not a known node)"}: ${c.Info}`);
    }
  }
  const out: CheckResult[] = [];
  for (const n of f.nodes) {
    const errs = errors.get(n.name);
    if (errs) {
      const fix =
        n.agent.running === false
          ? f.hints.startAgent(n.name)
          : `make ${n.ip ?? n.name}:6783 reachable from the other nodes (see tcp-6783); a peer address that is not a node belongs out of --peers / KUBE_PEERS`;
      out.push(result("mesh-connections", "fail", n.name, list(errs, 4), fix));
    } else if (f.nodes.some((o) => o.agent.report?.Router))
      out.push(result("mesh-connections", "pass", n.name, "no failed connections to or from it"));
  }
  return out;
}

export function checkMeshProtocol(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  const routers = f.nodes.filter((n) => n.agent.report?.Router).map((n) => ({ n, r: n.agent.report!.Router! }));
  const encryptionOf = (r: { Encryption?: boolean | string }) =>
    r.Encryption === true || r.Encryption === "enabled" ? "enabled" : "disabled";
  for (const { n, r } of routers) {
    const problems: string[] = [];
    for (const { n: o, r: s } of routers) {
      if (o === n) continue;
      if (r.ProtocolMaxVersion < s.ProtocolMinVersion || s.ProtocolMaxVersion < r.ProtocolMinVersion)
        problems.push(
          `speaks ${r.ProtocolMinVersion}-${r.ProtocolMaxVersion}, ${o.name} speaks ${s.ProtocolMinVersion}-${s.ProtocolMaxVersion}`,
        );
      if (encryptionOf(r) !== encryptionOf(s))
        problems.push(`encryption ${encryptionOf(r)}, ${o.name} has ${encryptionOf(s)}`);
    }
    // a refusal in the log from an address this agent is connected with now is over
    // (the connection it refused was given up, or the peer was fixed since)
    const connected = new Set(
      r.Connections.filter((c) => c.State === "established").map((c) => c.Address.replace(/:\d+$/, "")),
    );
    const stale = (line: string) => {
      const at = /(?:handshake with|peer at) (\d+\.\d+\.\d+\.\d+)/.exec(line)?.[1];
      return at !== undefined && connected.has(at) && !problems.length;
    };
    const seen = [
      ...r.Connections.filter((c) => MESH_REFUSAL.test(c.Info)).map((c) => c.Info),
      ...protocolMismatchLines(n.log?.lines ?? [])
        .filter((l) => !stale(l))
        .slice(-2),
    ];
    if (problems.length || seen.length) {
      const evidence = [...new Set([...problems, ...seen])].join("; ");
      const fix =
        "run the same weave version on every node " +
        "(a rolling upgrade keeps old and new overlapping: upgrade one node at a time), " +
        "with the same WEAVE_PASSWORD setting";
      out.push(result("mesh-protocol", "fail", n.name, evidence, fix));
    } else {
      const versions = `${r.ProtocolMinVersion}-${r.ProtocolMaxVersion}`;
      const encryption = encryptionOf(r);
      const asEveryPeer = routers.length > 1 ? ", as every peer" : "";
      out.push(
        result("mesh-protocol", "pass", n.name, `mesh protocol ${versions}, encryption ${encryption}${asEveryPeer}`),
      );
    }
  }
  return out;
}

export function checkAgentLogs(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    const dp = n.agent.report?.Router?.DatapathErrors ?? [];
    if (dp.length)
      out.push(
        result(
          "agent-logs",
          "fail",
          n.name,
          `datapath errors: ${list(dp, 3)}`,
          `the agent could not program vxlan-6784 (FDB/neighbour entries); read ${f.hints.agentLogs(n.name)} and restart the agent if it persists`,
        ),
      );
    if (!n.log) continue;
    if (n.log.error) {
      out.push(
        result(
          "agent-logs",
          "warn",
          n.name,
          `cannot read ${n.log.path}: ${n.log.error}`,
          `read the log by hand: ${f.hints.agentLogs(n.name)}`,
        ),
      );
      continue;
    }
    const recent = recentErrorLines(n.log.lines, f.now, LOG_WINDOW_MS);
    if (recent.length) {
      const shown = recent.slice(-3).map((l) => l.replace(/^(\S+) weave-agent: /, "$1 "));
      out.push(
        result(
          "agent-logs",
          "warn",
          n.name,
          `${plural(recent.length, "error line")} in the last ${LOG_WINDOW_MS / 60_000} min, latest: ${shown.join(" | ")}`,
          `read the whole story in ${f.hints.agentLogs(n.name)}; lines from a fault already fixed age out in ${LOG_WINDOW_MS / 60_000} min`,
        ),
      );
    } else if (!dp.length)
      out.push(
        result(
          "agent-logs",
          "pass",
          n.name,
          `no error lines in the last ${LOG_WINDOW_MS / 60_000} min of ${n.log.path}`,
        ),
      );
  }
  return out;
}
