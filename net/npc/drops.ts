/**
 * Saying why a connection was dropped: each NFLOG'd packet (a NEW connection that hit a
 * chain's final drop) is counted by protocol and destination port (the metric
 * weavenpc_blocked_connections_total{protocol,dport}, as weave-npc had it), matched to
 * its pods by address and explained by the reference evaluator: which policies isolate
 * the destination's ingress or the source's egress, and that none of them allows this
 * peer and port. The log is bounded: a retransmitted SYN of the same connection within
 * 5 s of the last is one drop (weave-npc's #3339 counted each), and at most `perSecond` lines are
 * written per second; the rest are summed up in one line.
 */
import { canonicalIp } from "../cidr.ts";
import type { LoggedPacket } from "../host/nflog.ts";
import { type Endpoint, verdict } from "../policy/evaluate.ts";
import type { ClusterState, Pod, Protocol } from "../policy/model.ts";
import { parseLogPrefix } from "../policy/names.ts";

/** A packet of the same flow within this long of the last one is the same connection (SYN retransmits). */
const DEDUPE_MS = 5000;

export class DropReporter {
  /** weavenpc_blocked_connections_total by `protocol dport`. */
  readonly blocked = new Map<string, number>();
  private recent = new Map<string, number>();
  private windowStart = 0;
  private linesInWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly o: {
      log: (line: string) => void;
      node: string;
      now?: () => number;
      perSecond?: number;
    },
  ) {}

  report(packets: LoggedPacket[], state: ClusterState): void {
    const now = this.o.now?.() ?? Date.now();
    for (const [k, at] of this.recent) if (now - at > DEDUPE_MS) this.recent.delete(k);
    const byIp = podsByIp(state);
    for (const p of packets) {
      const flow = `${p.protocol} ${p.saddr}:${p.sport ?? ""} ${p.daddr}:${p.dport ?? ""}`;
      const again = this.recent.has(flow);
      this.recent.set(flow, now);
      if (again) continue;
      const metricKey = `${p.protocol} ${p.dport ?? ""}`;
      this.blocked.set(metricKey, (this.blocked.get(metricKey) ?? 0) + 1);
      if (this.allowLine(now)) this.o.log(this.describe(p, state, byIp));
    }
  }

  private allowLine(now: number): boolean {
    if (now - this.windowStart >= 1000) {
      if (this.suppressed)
        this.o.log(`blocked: ${this.suppressed} more connection(s) in the last second (log rate limit)`);
      this.windowStart = now;
      this.linesInWindow = 0;
      this.suppressed = 0;
    }
    if (this.linesInWindow < (this.o.perSecond ?? 20)) {
      this.linesInWindow++;
      return true;
    }
    this.suppressed++;
    return false;
  }

  /** One line: what was dropped, between which pods, and the evaluator's reason. */
  describe(p: LoggedPacket, state: ClusterState, byIp = podsByIp(state)): string {
    const ends = [p.saddr, p.daddr].map((ip) => {
      const pod = byIp.get(canonicalIp(ip));
      return { ip, pod, ep: (pod ? { pod } : { ip }) as Endpoint };
    });
    const [from, to] = ends as [(typeof ends)[0], (typeof ends)[0]];
    const where = (e: typeof from, port?: number) =>
      `${e.ip}${port !== undefined ? `:${port}` : ""}${e.pod ? ` (${e.pod.namespace}/${e.pod.name})` : ""}`;
    const seen = parseLogPrefix(p.prefix);
    const head = `blocked ${p.protocol} ${where(from, p.sport)} -> ${where(to, p.dport)}`;
    if (seen?.who.endsWith("/-")) {
      const ns = seen.who.slice(0, -2);
      return `${head}: ${seen.dir} of a new pod of namespace ${ns}, closed until weave npc has synced it`;
    }
    const known = ["TCP", "UDP", "SCTP"].includes(p.protocol) && p.dport !== undefined;
    if (!known) {
      const v = verdict(state, from.ep, to.ep, 0, "TCP");
      const side = seen?.dir === "egress" ? v.egress : v.ingress;
      const by = side.isolatedBy.length ? ` by ${side.isolatedBy.join(", ")}` : "";
      return `${head}: ${seen?.dir ?? "policy"} of ${seen?.who ?? "?"} is isolated${by}; ${p.protocol} passes only rules that name no ports`;
    }
    const v = verdict(state, from.ep, to.ep, p.dport!, p.protocol as Protocol);
    const reason = v.allowed
      ? "the policies allow it now (the kernel had not caught up yet)"
      : v.reason.split(": ").slice(2).join(": ");
    return `${head}: ${reason}`;
  }
}

function podsByIp(state: ClusterState): Map<string, Pod> {
  const out = new Map<string, Pod>();
  for (const p of state.pods) if (!p.hostNetwork) for (const ip of p.ips) out.set(canonicalIp(ip), p);
  return out;
}
