/**
 * Which data path each peer's pod traffic takes (pure): the fast one (kernel VXLAN, in
 * WireGuard when encrypted) or the sleeve (userspace, UDP 6783, net/host/sleeve.ts).
 *
 * - A peer we have no direct mesh connection to is reached through the mesh's unicast
 *   route: over the sleeve of the neighbour the route goes through (Weave's multi-hop).
 * - A directly connected peer starts on the fast path. The agent sends a heartbeat to
 *   the peer's bridge address every HEARTBEAT_MS; it travels through VXLAN both ways
 *   (the bridges' own entries never leave VXLAN). No answer for FAIL_AFTER_MS while the
 *   mesh connection lives means VXLAN does not cross: the peer moves to the sleeve.
 * - Heartbeats go on while on the sleeve; RECOVER_PONGS answers in a row move the peer
 *   back to the fast path.
 * - A peer that does not gossip its bridge address (an older agent) cannot be tested and
 *   stays on the fast path.
 *
 * Every move is returned as a change, for the log, the Node's events and the metrics.
 */

export type Path = "fastdp" | "sleeve";

export const HEARTBEAT_MS = 1000;
export const FAIL_AFTER_MS = 3000;
export const RECOVER_PONGS = 3;
/** A gap longer than this between two answers starts the count of answers in a row again. */
const STREAK_GAP_MS = 2.5 * HEARTBEAT_MS;

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

type State = PeerPath & { watchSince: number; lastAnswer?: number; streak: number };

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

  /** A heartbeat answer from `name`, arrived over the fast path. */
  answered(name: string, now: number): void {
    const s = this.peers.get(name);
    if (!s) return;
    const inARow = s.lastAnswer !== undefined && now - s.lastAnswer <= STREAK_GAP_MS;
    s.streak = inARow ? s.streak + 1 : 1;
    s.lastAnswer = now;
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
    const base = { name: r.name, nickname: r.nickname };
    if (r.via !== r.name) {
      if (s?.path === "sleeve" && s.via === r.via) return s;
      const reason = `no direct connection to ${r.nickname}: through ${r.viaNickname}'s sleeve`;
      return {
        ...base,
        path: "sleeve",
        via: r.via,
        viaNickname: r.viaNickname,
        reason,
        since: now,
        watchSince: now,
        streak: 0,
      };
    }
    const fast = (watchSince: number): State => ({
      ...base,
      path: "fastdp",
      reason: "",
      since: now,
      watchSince,
      streak: 0,
    });
    // Newly direct (or newly seen): optimistic, as the kernel's entries may already carry it.
    if (!s || s.via !== undefined) return fast(now);
    if (!r.testable) return s.path === "fastdp" ? s : fast(now);
    const silentMs = now - Math.max(s.lastAnswer ?? Number.NEGATIVE_INFINITY, s.watchSince);
    if (s.path === "fastdp" && silentMs >= FAIL_AFTER_MS) {
      const seconds = Math.round(silentMs / 1000);
      const reason = `no heartbeat answered over the fast path for ${seconds} s: ${this.fastPort} does not cross`;
      return { ...s, path: "sleeve", reason, since: now, streak: 0 };
    }
    if (s.path === "sleeve" && s.streak >= RECOVER_PONGS && silentMs < FAIL_AFTER_MS)
      return { ...fast(s.watchSince), lastAnswer: s.lastAnswer };
    return s;
  }
}
