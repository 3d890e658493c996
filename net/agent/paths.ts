/**
 * Which data path each peer's pod traffic takes (pure): the fast one (kernel VXLAN, in
 * WireGuard when encrypted) or the sleeve (userspace, UDP 6783, net/host/sleeve.ts).
 *
 * - A peer we have no direct mesh connection to is reached through the mesh's unicast
 *   route: over the sleeve of the neighbour the route goes through (Weave's multi-hop).
 * - A directly connected peer starts on the fast path. The agent sends a heartbeat to
 *   the peer's bridge address every HEARTBEAT_MS; it travels through VXLAN both ways
 *   (the bridges' own entries never leave VXLAN). FAIL_AFTER heartbeats in a row
 *   unanswered (each one counts as missed when the next is sent) while the mesh
 *   connection lives means VXLAN does not cross: the peer moves to the sleeve. Counting
 *   heartbeats rather than seconds keeps an agent whose event loop stalled for a few
 *   seconds (a burst of pods) from taking the stall for a lost path.
 * - Heartbeats go on while on the sleeve; RECOVER_PONGS answers in a row move the peer
 *   back to the fast path.
 * - A peer that does not gossip its bridge address (an older agent) cannot be tested and
 *   stays on the fast path.
 *
 * Every move is returned as a change, for the log, the Node's events and the metrics.
 */

export type Path = "fastdp" | "sleeve";

export const HEARTBEAT_MS = 1000;
/** Heartbeats in a row unanswered before a peer moves to the sleeve. */
export const FAIL_AFTER = 3;
/** Heartbeats in a row answered before it moves back. */
export const RECOVER_PONGS = 3;

export type PeerRoute = {
  name: string;
  nickname: string;
  /** The neighbour the mesh's route to it goes through (its own name when directly connected). */
  via: string;
  viaNickname: string;
  /** It gossips its bridge address, so heartbeats can test the fast path. */
  testable: boolean;
};

export type PeerPath = {
  name: string;
  nickname: string;
  path: Path;
  /** With a routed sleeve: the neighbour it goes through. */
  via?: string;
  viaNickname?: string;
  /** Why it is on the sleeve (empty on the fast path). */
  reason: string;
  since: number;
};

export type PathChange = { peer: PeerPath; from?: PeerPath };

/** `outstanding`: a heartbeat was sent and not answered yet; `missed`/`streak`: unanswered/answered in a row. */
type State = PeerPath & { outstanding: boolean; missed: number; streak: number };

function view({ name, nickname, path, via, viaNickname, reason, since }: State): PeerPath {
  return { name, nickname, path, ...(via === undefined ? {} : { via, viaNickname }), reason, since };
}

export class Paths {
  private peers = new Map<string, State>();

  /** @param fastPort what VXLAN crosses on, for the reasons ("UDP 6784", or "UDP 6785 (WireGuard)"). */
  constructor(private fastPort: string) {}

  get(name: string): PeerPath | undefined {
    return this.peers.get(name);
  }

  all(): PeerPath[] {
    return [...this.peers.values()].map(view);
  }

  /** A heartbeat goes to `name` now: the previous one, if still unanswered, is missed. */
  sent(name: string): void {
    const s = this.peers.get(name);
    if (!s) return;
    if (s.outstanding) {
      s.missed++;
      s.streak = 0;
    }
    s.outstanding = true;
  }

  /** A heartbeat answer from `name`, arrived over the fast path. */
  answered(name: string): void {
    const s = this.peers.get(name);
    if (!s?.outstanding) return;
    s.outstanding = false;
    s.missed = 0;
    s.streak++;
  }

  /** Re-decide every peer from the current routes and heartbeats; returns the moves. */
  update(now: number, routes: PeerRoute[]): PathChange[] {
    const changes: PathChange[] = [];
    const present = new Set(routes.map((r) => r.name));
    for (const name of this.peers.keys()) if (!present.has(name)) this.peers.delete(name);
    for (const r of routes) {
      const before = this.peers.get(r.name);
      const next = this.decide(now, r, before);
      this.peers.set(r.name, next);
      const moved = !before || before.path !== next.path || before.via !== next.via;
      if (moved && (before || next.path === "sleeve"))
        changes.push({ peer: view(next), ...(before ? { from: view(before) } : {}) });
    }
    return changes;
  }

  private decide(now: number, r: PeerRoute, s: State | undefined): State {
    const base = { name: r.name, nickname: r.nickname, since: now, outstanding: false, missed: 0, streak: 0 };
    if (r.via !== r.name) {
      if (s?.path === "sleeve" && s.via === r.via) return s;
      const reason = `no direct connection to ${r.nickname}: through ${r.viaNickname}'s sleeve`;
      return { ...base, path: "sleeve", via: r.via, viaNickname: r.viaNickname, reason };
    }
    // Newly direct (or newly seen): optimistic, as the kernel's entries may already carry it.
    if (!s || s.via !== undefined) return { ...base, path: "fastdp", reason: "" };
    if (!r.testable) return s.path === "fastdp" ? s : { ...base, path: "fastdp", reason: "" };
    if (s.path === "fastdp" && s.missed >= FAIL_AFTER) {
      const reason = `${s.missed} heartbeats in a row unanswered over the fast path: ${this.fastPort} does not cross`;
      return { ...s, path: "sleeve", reason, since: now, streak: 0 };
    }
    if (s.path === "sleeve" && s.streak >= RECOVER_PONGS) return { ...s, path: "fastdp", reason: "", since: now };
    return s;
  }
}
