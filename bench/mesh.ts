/**
 * bench/mesh: N real mesh routers in one process, over TCP on 127.0.0.1 (one port each),
 * each dialling up to `degree` random peers started before it, with peer discovery off
 * so the graph stays as built. Reports
 *   (a) seconds from the first start until every peer knows all N,
 *   (b) seconds for one more peer, joining through one random peer (3 s after (a), once
 *       the start-up has settled), to be known by all,
 *   (c) bytes sent per peer per second once quiet (heartbeats and periodic digests).
 *
 *   bun bench/mesh.ts --peers N [--degree 3] [--quiet-seconds 20] [--json]
 *
 * Prints a table, then one JSON line:
 *   {"peers":N,"allKnowAllSeconds":a,"joinSeconds":b,"quietBytesPerPeerPerSecond":c}
 * Every socket is on 127.0.0.1; ports from --base-port (default 21000, below the ephemeral range) up.
 */
import { Router } from "../net/mesh/router.ts";
import { realScheduler } from "../net/mesh/transport.ts";
import { tcpTransport } from "../net/host/tcp-transport.ts";
import { nameFromSeed } from "../net/mesh/peer-name.ts";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    console.error(`--${name} "${process.argv[i + 1]}" is not a number`);
    process.exit(2);
  }
  return v;
}

const N = arg("peers", 100);
const DEGREE = arg("degree", 3);
const QUIET = arg("quiet-seconds", 35); // spans one round of the 30 s digests
const BASE = arg("base-port", 21000); // below the ephemeral range, which dials use
const TIMEOUT = arg("timeout", 120);
const json = process.argv.includes("--json");

const routers: Router[] = [];
let stopped = false;
function stopAll() {
  if (stopped) return;
  stopped = true;
  for (const r of routers) r.stop();
}
process.on("SIGINT", () => {
  stopAll();
  process.exit(130);
});

function makeRouter(i: number): Router {
  const r = new Router({
    name: nameFromSeed(new Bun.CryptoHasher("sha256").update(`bench-peer-${i}`).digest("hex")),
    nickname: `p${i}`,
    listen: `127.0.0.1:${BASE + i}`,
    transport: tcpTransport(),
    sched: realScheduler,
    log: () => {},
    discovery: false,
  });
  r.start();
  return r;
}

function dialRandom(r: Router, i: number, k: number): void {
  const targets = new Set<number>();
  while (targets.size < Math.min(k, i)) targets.add(Math.floor(Math.random() * i));
  r.addTargets([...targets].map((t) => `127.0.0.1:${BASE + t}`));
}

async function until(cond: () => boolean, what: string): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > TIMEOUT * 1000) throw new Error(`${what}: not done after ${TIMEOUT} s`);
    await Bun.sleep(5);
  }
  return (performance.now() - t0) / 1000;
}

try {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const r = makeRouter(i);
    dialRandom(r, i, DEGREE);
    routers.push(r);
  }
  await until(() => routers.every((r) => r.topology.size === N), "all know all");
  const allKnow = (performance.now() - t0) / 1000;

  // Let the last connection updates of the start settle, so the join is measured in a
  // mesh in its steady state rather than in the wake of the start-up burst.
  await Bun.sleep(3000);
  const joiner = makeRouter(N);
  dialRandom(joiner, N, 1);
  routers.push(joiner);
  const join = await until(() => routers.every((r) => r.topology.get(joiner.name) !== undefined), "join");

  // quiet: let the join settle, then count what everyone sends over a window
  await Bun.sleep(3000);
  const before = routers.reduce((n, r) => n + r.bytesSent, 0);
  await Bun.sleep(QUIET * 1000);
  const after = routers.reduce((n, r) => n + r.bytesSent, 0);
  const quiet = (after - before) / routers.length / QUIET;
  const rss = process.memoryUsage().rss / 2 ** 20;

  if (!json) {
    console.log(
      `mesh: ${N} peers, each dialling up to ${DEGREE} earlier peers, discovery off, one process, TCP on 127.0.0.1`,
    );
    console.log(`  every peer knows all ${N}:      ${allKnow.toFixed(2)} s`);
    console.log(`  one more peer known by all:    ${join.toFixed(3)} s`);
    console.log(`  quiet traffic per peer:        ${(quiet / 1000).toFixed(2)} kB/s`);
    console.log(`  process RSS (all ${N + 1} peers): ${rss.toFixed(0)} MB`);
  }
  console.log(
    JSON.stringify({
      peers: N,
      allKnowAllSeconds: +allKnow.toFixed(3),
      joinSeconds: +join.toFixed(3),
      quietBytesPerPeerPerSecond: Math.round(quiet),
    }),
  );
  stopAll();
  process.exit(0);
} catch (e) {
  console.error(`bench/mesh: ${(e as Error).message}`);
  stopAll();
  process.exit(1);
}
