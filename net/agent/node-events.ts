/**
 * What the agent tells an operator through Kubernetes Events on its Node (pure): which
 * situations, under which reason, keyed how. The key is the stable part of a situation
 * (the peer's address, the route): every occurrence with the same reason and key is the
 * same Event, whose count grows (net/events/aggregator.ts), while the message says the
 * latest detail. Each function returns the occurrence to record, or none.
 */
import { formatCidr, overlaps, parseCidr, type Cidr } from "../cidr.ts";
import type { Occurrence } from "../events/aggregator.ts";
import type { Route } from "../host/host.ts";
import { VXLAN_OVERHEAD } from "./mtu.ts";
import type { PathChange } from "./paths.ts";

export const REASONS = {
  peerFailing: "WeavePeerConnectionFailing",
  ipamWaiting: "WeaveIPAMWaiting",
  ipamExhausted: "WeaveIPAMExhausted",
  ipamConflict: "WeaveIPAMConflict",
  mtuMismatch: "WeaveMTUMismatch",
  rangeOverlap: "WeaveRangeOverlap",
  sleeve: "WeaveSleeve",
  fastDatapath: "WeaveFastDatapath",
} as const;

/**
 * A peer's pod traffic changed data path (net/agent/paths.ts): onto the sleeve is a
 * Warning naming what to open, back to the fast path a Normal event; keyed by the peer.
 */
export function pathChanged(c: PathChange, fastPorts: string): Occurrence | undefined {
  const p = c.peer;
  if (p.path === "sleeve") {
    const open = p.via ? "" : `; open ${fastPorts} between the nodes for the fast path`;
    return {
      reason: REASONS.sleeve,
      key: p.name,
      type: "Warning",
      message: `pod traffic to peer ${p.nickname} (${p.name}) goes over the sleeve (UDP 6783, userspace, slower): ${p.reason}${open}`,
    };
  }
  if (!c.from) return undefined;
  return {
    reason: REASONS.fastDatapath,
    key: p.name,
    type: "Normal",
    message: `pod traffic to peer ${p.nickname} (${p.name}) is back on the fast path (${c.from.via ? "directly connected again" : "heartbeats answered"})`,
  };
}

/** Failures in a row before a peer connection is worth an Event (one lost connection is not). */
export const PEER_FAILURES_BEFORE_EVENT = 3;
/** How long the ring may wait before that is worth an Event, and how often it is counted again. */
export const IPAM_WAIT_GRACE_MS = 30_000;

/** A connection to a peer failed again; an occurrence from the third failure in a row. */
export function peerFailure(f: { address: string; attempt: number; why: string }): Occurrence | undefined {
  if (f.attempt < PEER_FAILURES_BEFORE_EVENT) return undefined;
  return {
    reason: REASONS.peerFailing,
    key: f.address,
    message: `connection to peer ${f.address} failed ${f.attempt} times in a row (last: ${f.why}); check TCP 6783 and UDP 6784 between the nodes (weave doctor)`,
  };
}

/**
 * The ring still cannot hand out space: counted once the wait passed the grace period,
 * then once per grace period while it lasts. `since` is when the wait began (undefined:
 * not waiting), `last` when it was last counted.
 */
export function ipamWaiting(
  waiting: string,
  since: number | undefined,
  last: number | undefined,
  now: number,
): Occurrence | undefined {
  if (!waiting || since === undefined || now - since < IPAM_WAIT_GRACE_MS) return undefined;
  if (last !== undefined && now - last < IPAM_WAIT_GRACE_MS) return undefined;
  const secs = Math.round((now - since) / 1000);
  return {
    reason: REASONS.ipamWaiting,
    key: "",
    message: `IPAM has been waiting for ${secs}s: ${waiting}; pods on this node get no address until it is resolved`,
  };
}

/** A pod's allocation gave up: no space here, and none came from peers in time. */
export function ipamExhausted(what: string, waitedMs: number, range: Cidr): Occurrence {
  return {
    reason: REASONS.ipamExhausted,
    key: "",
    message: `no free address for ${what} after waiting ${Math.round(waitedMs / 1000)}s for space from peers (range ${formatCidr(range)}); weave status ipam shows who owns what`,
  };
}

/** The ring holds conflicting claims (e.g. seeded by different peers). */
export function ipamConflict(conflict: string): Occurrence {
  return { reason: REASONS.ipamConflict, key: conflict, message: `IPAM: ${conflict}` };
}

/** WEAVE_MTU set above what the underlay carries once VXLAN's headers are added. */
export function mtuMismatch(configured: number | undefined, underlay: number | undefined): Occurrence | undefined {
  if (configured === undefined || underlay === undefined || configured + VXLAN_OVERHEAD <= underlay) return undefined;
  const most = underlay - VXLAN_OVERHEAD;
  return {
    reason: REASONS.mtuMismatch,
    key: `${configured}/${underlay}`,
    message: `WEAVE_MTU ${configured} does not fit the underlay's MTU ${underlay} with VXLAN's ${VXLAN_OVERHEAD} bytes: full-size pod packets between nodes will be dropped; set WEAVE_MTU to at most ${most}, or leave it unset`,
  };
}

/**
 * Routes of the node that overlap the pod range (not the default route, not ours):
 * pods and that network would shadow each other.
 */
export function rangeOverlaps(range: Cidr, routes: Route[], ours: (dev: number | undefined) => boolean): Occurrence[] {
  const out: Occurrence[] = [];
  const seen = new Set<string>();
  for (const r of routes) {
    if (r.table !== 254 || ours(r.dev) || seen.has(r.dst)) continue;
    let c: Cidr;
    try {
      c = parseCidr(r.dst, false);
    } catch {
      continue;
    }
    if (c.prefix === 0 || !overlaps(c, range)) continue;
    seen.add(r.dst);
    out.push({
      reason: REASONS.rangeOverlap,
      key: r.dst,
      message: `the pod range ${formatCidr(range)} (IPALLOC_RANGE) overlaps the route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} of this node: pods and that network cannot both be reached; pick a range clear of it`,
    });
  }
  return out;
}
