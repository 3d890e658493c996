/**
 * The distributed allocator's ring: who owns which span of the cluster range.
 * The invariants and the reasoning are written up in docs/ipam.md; in short:
 *
 * - Each peer owns a set of spans and only ever allocates inside them.
 * - Ownership moves only by the owner's own act: it removes a span from what it owns,
 *   records the gift ("to X: span") and persists both before anyone can hear of it.
 *   The recipient takes the span when it sees the gift in the giver's gossiped state,
 *   records that it accepted (an ack), and never accepts the same gift twice: a gift is
 *   named by its giver and the giver's serial number, and acks are kept for good, since
 *   an old copy of the giver's state can still reach us (a restarted peer hears it from
 *   a neighbour that has not caught up). The giver forgets the gift once it sees the
 *   ack. Lost messages only delay a gift; a partition can never make two peers own one
 *   address, because no one takes without a gift.
 * - The first spans come from a seed: an explicit list of peer names
 *   (IPALLOC_INIT=seed=...), or the set every configured peer agrees on (consensus:
 *   each proposes the sorted names of itself and its KUBE_PEERS, and the range is split
 *   only when all members propose the same set), or a lone peer with no peers
 *   configured. A peer that joins later adopts the ring it meets and asks for space.
 * - Out of space, a peer says so (want > 0); the peer with the most free space in the
 *   asker's ring gives it half of its longest free run.
 * - A dead peer's spans go to one heir, recorded as "reclaimed"; a peer that comes back
 *   after being reclaimed drops the spans it lost. rmpeer may be run on any peer: it
 *   records the request, and only the heir acts on it. The heir is the lowest-named
 *   other peer of the ring that we know of, reachable or not, so two partitions never
 *   pick two heirs (if the heir is down too, remove it as well: its heir takes both).
 *
 * `step` is pure: given our state and what we see of the others, it returns the next
 * state and what to say about it. The agent persists the state before gossiping it.
 */
import type { Span } from "./allocator.ts";

export type Gift = { to: string; span: Span; id: number };

/** What a peer gossips about its IPAM, and (the same shape) what it persists. */
export type IpamState = {
  /** Ring id: "" while not part of a ring. */
  ring: string;
  /** Consensus proposal (sorted peer names) while no ring exists. */
  prop?: string[];
  owned: Span[];
  /** Free addresses in `owned` (gossiped so askers can pick a donor). */
  free: number;
  gifts: Gift[];
  /** Serial number of our next gift. */
  serial: number;
  /** Keys of every gift we ever accepted. */
  acks: string[];
  /** > 0 while we ask for space. */
  want: number;
  /** Dead peers whose spans we took over. */
  reclaimed: string[];
  /** We took our share of the seed (once in a ring's life). */
  claimed?: boolean;
  /** Dead peers whose removal was asked for here (rmpeer), until the heir took them over. */
  removing?: string[];
};

export type Init = { kind: "consensus"; peers: string[] } | { kind: "seed"; names: string[] } | { kind: "observer" };

export type PeerView = { name: string; reachable: boolean; addresses: string[]; state?: IpamState };

export type StepResult = { state: IpamState; changed: boolean; notes: string[]; waiting?: string; conflicts: string[] };

export const emptyState = (): IpamState => ({
  ring: "",
  owned: [],
  free: 0,
  gifts: [],
  serial: 0,
  acks: [],
  want: 0,
  reclaimed: [],
});

export const giftKey = (giver: string, g: Gift) => `${giver}#${g.id}`;

export function spanSize(spans: Span[]): number {
  return spans.reduce((n, [s, e]) => n + (e - s), 0);
}

/** Sorted, merged, without empty spans. */
export function normalize(spans: Span[]): Span[] {
  const sorted = spans.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
  const out: Span[] = [];
  for (const [s, e] of sorted) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

export function subtract(spans: Span[], cut: Span): Span[] {
  const out: Span[] = [];
  for (const [s, e] of spans) {
    if (cut[1] <= s || cut[0] >= e) out.push([s, e]);
    else {
      if (cut[0] > s) out.push([s, cut[0]]);
      if (cut[1] < e) out.push([cut[1], e]);
    }
  }
  return normalize(out);
}

export function overlap(a: Span[], b: Span[]): Span[] {
  const out: Span[] = [];
  for (const [s1, e1] of a)
    for (const [s2, e2] of b) if (Math.max(s1, s2) < Math.min(e1, e2)) out.push([Math.max(s1, s2), Math.min(e1, e2)]);
  return normalize(out);
}

/** The share of `range` that `self` gets when `names` split it evenly. */
export function share(names: string[], self: string, range: Span): Span {
  const sorted = [...names].sort();
  const i = sorted.indexOf(self);
  const size = range[1] - range[0];
  return [range[0] + Math.floor((size * i) / sorted.length), range[0] + Math.floor((size * (i + 1)) / sorted.length)];
}

export function ringId(names: string[]): string {
  return new Bun.CryptoHasher("sha256")
    .update([...names].sort().join(","))
    .digest("hex")
    .slice(0, 12);
}

const sameList = (a?: string[], b?: string[]) => !!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * One step of the ring for peer `self`. `free` is how many addresses are free in what
 * we own; `spanToGive(owned)` picks a span of `owned` to give away (it knows the
 * allocations).
 */
export function step(
  self: string,
  current: IpamState,
  free: number,
  views: PeerView[],
  init: Init,
  range: Span,
  spanToGive: (owned: Span[]) => Span | undefined,
  /** In a cluster, the heir also needs the ConfigMap claim (k8s/reclaim-lock.ts). */
  mayReclaim: (dead: string) => boolean = () => true,
): StepResult {
  const s: IpamState = {
    ...current,
    owned: normalize(current.owned),
    gifts: [...current.gifts],
    acks: [...current.acks],
    reclaimed: [...current.reclaimed],
  };
  const notes: string[] = [];
  const conflicts: string[] = [];
  let changed = false;
  const others = views.filter((v) => v.name !== self);
  const live = others.filter((v) => v.reachable && v.state);
  const byName = new Map(others.map((v) => [v.name, v]));

  // Someone took over our spans while we were gone (rmpeer): give up what they hold.
  for (const v of others) {
    if (!v.state?.reclaimed.includes(self) || v.state.ring !== s.ring) continue;
    const lost = overlap(s.owned, v.state.owned);
    if (!lost.length) continue;
    for (const span of lost) s.owned = subtract(s.owned, span);
    changed = true;
    notes.push(
      `${v.name} took over this peer's space while it was away (rmpeer): dropped ${lost.length} span(s); pods still holding addresses there must be restarted`,
    );
  }

  if (s.ring === "") {
    const rings = [...new Set(live.map((v) => v.state!.ring).filter(Boolean))].sort();
    if (rings.length) {
      s.ring = rings[0]!;
      changed = true;
      // A seed member that hears of the ring before it saw the agreement itself still
      // takes its share: the others left it for us.
      const seeds = init.kind === "seed" ? init.names : s.prop;
      if (seeds?.includes(self) && ringId(seeds) === s.ring && !s.claimed) {
        s.owned = normalize([...s.owned, share(seeds, self, range)]);
        s.claimed = true;
        notes.push(`took this peer's share of the ring ${s.ring} seeded by ${seeds.length} peer(s)`);
      } else
        notes.push(`joined the ring ${s.ring} that ${live.find((v) => v.state!.ring === s.ring)!.name} is part of`);
      delete s.prop;
    } else if (init.kind === "observer") {
      return { state: s, changed, notes, conflicts, waiting: "observer: waiting for a peer that is part of a ring" };
    } else if (init.kind === "seed") {
      if (!init.names.includes(self))
        return {
          state: s,
          changed,
          notes,
          conflicts,
          waiting: `waiting for one of the seed peers ${init.names.join(", ")}`,
        };
      s.owned = [share(init.names, self, range)];
      s.ring = ringId(init.names);
      s.claimed = true;
      changed = true;
      notes.push(`seeded the ring with ${init.names.length} peer(s) (IPALLOC_INIT seed)`);
    } else {
      const members = [self];
      const missing: string[] = [];
      for (const addr of init.peers) {
        const v = others.find((o) => o.reachable && o.addresses.includes(addr));
        if (v) members.push(v.name);
        else missing.push(addr);
      }
      if (missing.length)
        return {
          state: s,
          changed,
          notes,
          conflicts,
          waiting: `awaiting consensus: no answer yet from ${missing.join(", ")}`,
        };
      const prop = [...new Set(members)].sort();
      if (!sameList(prop, s.prop)) {
        s.prop = prop;
        changed = true;
      }
      const disagree = prop.filter((m) => m !== self && !sameList(byName.get(m)?.state?.prop, prop));
      if (disagree.length) {
        const differ = disagree.filter((m) => byName.get(m)?.state?.prop);
        const why = differ.length
          ? `; ${differ.join(", ")} propose${differ.length === 1 ? "s" : ""} a different set (give every node the same peers, or set IPALLOC_INIT=seed=<names>)`
          : "";
        return {
          state: s,
          changed,
          notes,
          conflicts,
          waiting: `awaiting consensus of ${prop.length} peers: waiting for ${disagree.join(", ")}${why}`,
        };
      }
      s.owned = [share(prop, self, range)];
      s.ring = ringId(prop);
      s.claimed = true;
      delete s.prop;
      changed = true;
      notes.push(`seeded the ring by consensus of ${prop.length} peer(s)`);
    }
  }

  // From here on we are part of ring s.ring.
  for (const v of live)
    if (v.state!.ring && v.state!.ring !== s.ring)
      conflicts.push(
        `${v.name} is part of another ring (${v.state!.ring}, ours ${s.ring}): it was seeded by different peers; addresses are not shared with it`,
      );
  const ours = others.filter((v) => v.state?.ring === s.ring);

  // Take gifts addressed to us (even from peers unreachable now: a gift is a fact).
  let gained = 0;
  for (const v of ours) {
    for (const g of v.state!.gifts) {
      const key = giftKey(v.name, g);
      if (g.to !== self || s.acks.includes(key)) continue;
      s.owned = normalize([...s.owned, g.span]);
      s.acks.push(key);
      gained += g.span[1] - g.span[0];
      changed = true;
      notes.push(`received ${g.span[1] - g.span[0]} addresses from ${v.name}`);
    }
  }
  // Forget gifts the recipient acknowledged.
  const gifts = s.gifts.filter((g) => !byName.get(g.to)?.state?.acks.includes(giftKey(self, g)));
  if (gifts.length !== s.gifts.length) {
    s.gifts = gifts;
    changed = true;
  }

  let myFree = free + gained;
  const want = myFree === 0 ? Math.max(1, s.want) : 0;
  if (want !== s.want) {
    s.want = want;
    changed = true;
    if (want) notes.push("out of space: asking peers for some");
  }

  // Give to askers when we are the best donor we can see.
  for (const v of ours.filter((o) => o.reachable && o.state!.want > 0).sort((a, b) => a.name.localeCompare(b.name))) {
    // Someone (maybe us) already gave to this asker and it has not taken it yet: its
    // "want" is stale, do not give twice.
    if (s.gifts.some((g) => g.to === v.name)) continue;
    if (ours.some((o) => o.state!.gifts.some((g) => g.to === v.name && !v.state!.acks.includes(giftKey(o.name, g)))))
      continue;
    // Rank on what everyone has gossiped (our published free, not our live count), so
    // all peers with the same view pick the same donor and only one gives.
    const donors = [
      { name: self, free: current.free },
      ...ours.filter((o) => o.reachable && o.name !== v.name).map((o) => ({ name: o.name, free: o.state!.free })),
    ];
    donors.sort((a, b) => b.free - a.free || a.name.localeCompare(b.name));
    if (donors[0]!.name !== self || myFree < 1) continue;
    const span = spanToGive(s.owned);
    if (!span) continue;
    s.owned = subtract(s.owned, span);
    s.gifts.push({ to: v.name, span, id: s.serial++ });
    myFree -= span[1] - span[0];
    changed = true;
    notes.push(`gave ${span[1] - span[0]} addresses to ${v.name}, which asked for space`);
  }
  // Removals asked for anywhere in the ring: the heir takes the space over, once.
  const done = new Set([...s.reclaimed, ...ours.flatMap((v) => v.state!.reclaimed)]);
  const asked = new Set([...(s.removing ?? []), ...ours.flatMap((v) => v.state!.removing ?? [])]);
  for (const dead of asked) {
    if (done.has(dead)) continue;
    const d = byName.get(dead);
    if (!d || d.reachable) continue;
    if (heirOf(dead, self, ours) !== self || !mayReclaim(dead)) continue;
    const r = reclaim(
      self,
      s,
      d,
      others.filter((o) => o.name !== dead),
    );
    Object.assign(s, r.state);
    myFree += spanSize(r.taken);
    changed = true;
    notes.push(`took over ${spanSize(r.taken)} addresses of removed peer ${dead}`);
  }
  if (s.removing?.length) {
    const left = s.removing.filter((d) => !done.has(d) && !s.reclaimed.includes(d));
    if (left.length !== s.removing.length) {
      s.removing = left;
      changed = true;
    }
  }

  s.free = myFree;
  if (s.free !== current.free) changed = true;
  return { state: s, changed, notes, conflicts };
}

/** Removals asked for that `self` is the heir of and nobody has done yet. */
export function pendingRemovals(self: string, s: IpamState, views: PeerView[]): string[] {
  const ours = views.filter((v) => v.name !== self && v.state?.ring === s.ring);
  const done = new Set([...s.reclaimed, ...ours.flatMap((v) => v.state!.reclaimed)]);
  const asked = new Set([...(s.removing ?? []), ...ours.flatMap((v) => v.state!.removing ?? [])]);
  return [...asked].filter(
    (d) => !done.has(d) && views.some((v) => v.name === d && !v.reachable) && heirOf(d, self, ours) === self,
  );
}

/** Who takes over `dead`'s space: the lowest-named other member of the ring we know of. */
export function heirOf(dead: string, self: string, ringPeers: PeerView[]): string {
  return [self, ...ringPeers.map((v) => v.name)].filter((n) => n !== dead).sort()[0]!;
}

/**
 * rmpeer: take over a dead peer's spans (the caller makes sure only one heir does).
 * Whatever another peer is known to own, or to have been given, is left out, in case
 * our picture of the dead peer is older than its last gift.
 */
export function reclaim(
  self: string,
  current: IpamState,
  dead: PeerView,
  others: PeerView[],
): { state: IpamState; taken: Span[] } {
  if (dead.name === self) throw new Error("a peer cannot reclaim itself");
  let taken = normalize(dead.state?.ring === current.ring ? dead.state.owned : []);
  for (const o of others) {
    if (o.name === dead.name || !o.state) continue;
    for (const span of [...o.state.owned, ...o.state.gifts.map((g) => g.span)]) taken = subtract(taken, span);
  }
  return {
    state: {
      ...current,
      owned: normalize([...current.owned, ...taken]),
      reclaimed: [...new Set([...current.reclaimed, dead.name])],
    },
    taken,
  };
}
