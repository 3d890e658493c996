/**
 * The mesh handshake with two passwords (docs/protocol.md, "Rotation"), routers over the
 * in-memory network: a listener accepts either of its passwords at message 3; a dialler
 * picks one per target and tries the other after a refusal; every peer's entry says
 * which passwords it holds (fingerprints); a rotation A -> A+B -> B with one restart at a
 * time never partitions the mesh; at the end a peer with only A is refused.
 */
import { describe, expect, test } from "bun:test";
import { Router, type RouterOptions } from "../../net/mesh/router.ts";
import { meshPsk } from "../../net/crypto/password.ts";
import { fingerprint, rotationStatus } from "../../net/crypto/rotation.ts";
import { nameFromSeed } from "../../net/mesh/peer-name.ts";
import { MemNet, VirtualClock } from "../support/mem-net.ts";

const RANGE = "10.32.0.0/12";
const stretch = (p: string) => meshPsk(new TextEncoder().encode(p), RANGE, { N: 2 ** 10, r: 8, p: 1 });
const A = stretch("the old cluster password");
const B = stretch("the new cluster password");
const C = stretch("some other cluster's password");
const addr = (i: number) => `10.0.0.${i}:6783`;
const WRONG = /wrong password or not a weave peer/;

function world() {
  const clock = new VirtualClock();
  const net = new MemNet(clock);
  const logs: string[] = [];
  const routers = new Map<number, Router>();
  const add = (i: number, targets: number[], o: Partial<RouterOptions> = {}) => {
    const r = new Router({
      name: nameFromSeed(Bun.hash(`rot-${i}`).toString(16).padStart(12, "0")),
      nickname: `n${i}`,
      listen: addr(i),
      transport: net.transport(addr(i)),
      sched: clock,
      log: (m) => logs.push(`n${i}: ${m}`),
      ...o,
    });
    r.start();
    r.addTargets(targets.map(addr));
    routers.set(i, r);
    return r;
  };
  /** Stop peer i's router and start it again with other passwords (an agent restart). */
  const restart = (i: number, targets: number[], o: Partial<RouterOptions>) => {
    routers.get(i)!.stop();
    return add(i, targets, o);
  };
  const reachable = (i: number) => [...routers.get(i)!.topology.reachable()].sort();
  const names = (...is: number[]) => is.map((i) => routers.get(i)!.name).sort();
  const linesOf = (i: number, pattern: RegExp) => logs.filter((l) => l.startsWith(`n${i}: `) && pattern.test(l));
  return { clock, net, logs, routers, add, restart, reachable, names, linesOf };
}

const others = (i: number, n: number) => Array.from({ length: n }, (_, k) => k + 1).filter((j) => j !== i);

describe("a mesh with two passwords", () => {
  test("a listener with A and B accepts a dialler with either, and says which it used", async () => {
    const w = world();
    const l = w.add(1, [], { psk: A, pskNext: B });
    w.add(2, [1], { psk: A });
    w.add(3, [1], { psk: B });
    w.add(4, [1], { psk: C });
    await w.clock.run(8_000);
    expect(w.reachable(1)).toEqual(w.names(1, 2, 3));
    const used = (peer: number) =>
      l.connections().find((c) => c.state === "established" && c.name === w.routers.get(peer)!.name)?.password;
    expect(used(2)).toBe(0);
    expect(used(3)).toBe(1);
    // C holds neither: refused on both sides, as any wrong password
    expect(w.linesOf(1, /its last handshake message did not open/).length).toBeGreaterThan(0);
    expect(w.linesOf(4, /it hung up after our last handshake message/).length).toBeGreaterThan(0);
    expect(w.reachable(4)).toEqual(w.names(4));
  });

  test("entries carry fingerprints, never keys; the next password is used once both ends hold it", async () => {
    const w = world();
    const a = w.add(1, [], { psk: A, pskNext: B });
    w.add(2, [1], { psk: A, pskNext: B });
    await w.clock.run(5_000);
    expect(a.topology.get(w.routers.get(2)!.name)!.passwords).toEqual([fingerprint(A), fingerprint(B)]);
    const line = JSON.stringify(a.topology.entries());
    expect(line).not.toContain(Buffer.from(A).toString("hex"));
    // the dialler (2) knew 1's entry only after connecting: its first dial used A; the next uses B
    w.net.kill(addr(2));
    w.routers.get(2)!.stop();
    const b = w.add(2, [1], { psk: A, pskNext: B });
    await w.clock.run(5_000);
    expect(b.connections().find((c) => c.state === "established")?.password).toBeDefined();
    expect(w.logs.filter((l) => WRONG.test(l))).toEqual([]);
  });

  test("a dialler with A and B whose listener holds only B (entry unknown) is refused once, then uses B", async () => {
    const w = world();
    w.add(1, [], { psk: B });
    const d = w.add(2, [1], { psk: A, pskNext: B });
    await w.clock.run(10_000);
    expect(w.reachable(2)).toEqual(w.names(1, 2));
    expect(w.linesOf(2, WRONG).length).toBe(1);
    expect(d.connections().find((c) => c.state === "established")?.password).toBe(1);
  });

  test("A -> A+B -> B, one peer restarted at a time: never a partition, and then a peer with A is refused", async () => {
    const n = 4;
    const w = world();
    for (let i = 1; i <= n; i++) w.add(i, others(i, n), { psk: A });
    await w.clock.run(10_000);
    const all = w.names(1, 2, 3, 4);
    const everyoneSeesAll = () => {
      for (let i = 1; i <= n; i++) expect(w.reachable(i)).toEqual(all);
    };
    everyoneSeesAll();
    const steps: [number, Partial<RouterOptions>][] = [
      ...others(0, n).map((i) => [i, { psk: A, pskNext: B }] as [number, Partial<RouterOptions>]),
      ...others(0, n).map((i) => [i, { psk: B }] as [number, Partial<RouterOptions>]),
    ];
    for (const [k, [i, o]] of steps.entries()) {
      w.restart(i, others(i, n), o);
      // the others keep their connections among themselves throughout
      for (let t = 0; t < 10; t++) {
        await w.clock.run(500);
        for (const j of others(i, n)) expect(w.reachable(j)).toEqual(expect.arrayContaining(w.names(...others(i, n))));
      }
      everyoneSeesAll();
      if (k === n - 1) {
        // every peer holds both: each one says the old may go
        for (let j = 1; j <= n; j++) {
          const r = w.routers.get(j)!;
          expect(rotationStatus(r.passwordFingerprints, r.topology.entries()).oldCanBeDropped).toBe(true);
        }
      }
      if (k < n - 1) {
        const r = w.routers.get(i)!;
        expect(rotationStatus(r.passwordFingerprints, r.topology.entries()).oldCanBeDropped).toBe(false);
      }
    }
    // only the restarted peers' connections ended, and no handshake was refused all along
    expect(w.logs.filter((l) => WRONG.test(l))).toEqual([]);
    const lost = w.logs.filter((l) => / lost: /.test(l));
    expect(lost.filter((l) => !/ lost: (connection closed|router stopping)/.test(l))).toEqual([]);
    // every connection now runs on B
    for (let i = 1; i <= n; i++) expect(w.routers.get(i)!.passwordFingerprints).toEqual([fingerprint(B)]);
    // a peer with only the old password is refused, and the rest never notice
    w.add(5, [1, 2], { psk: A });
    await w.clock.run(10_000);
    everyoneSeesAll();
    expect(w.reachable(5)).toEqual(w.names(5));
    expect(w.linesOf(1, /its last handshake message did not open/).length).toBeGreaterThan(0);
    expect(w.linesOf(5, WRONG).length).toBeGreaterThan(0);
    expect(w.logs.some((l) => l.includes("cluster password"))).toBe(false);
  });
});
