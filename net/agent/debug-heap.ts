/**
 * Opt-in memory tracing of the agent, for hunting leaks (issue 14, the soak's memory
 * invariant); off unless WEAVE_DEBUG_HEAP names a file (commands/agent.ts). Every
 * WEAVE_DEBUG_HEAP_EVERY seconds (default 30) one JSON line is appended to that file:
 *
 *   {"t":<unix ms>,"up":<s since start>,"rssAnonKb":..,"rssKb":..,"jitKb":..,
 *    "before":{"heapSize":..,"heapCapacity":..,"extraMemorySize":..,"objectCount":..,
 *              "mallocKb":..,"committedKb":..},
 *    "after":{..the same after Bun.gc(true)..},"types":{<type>:<count>,..},"extra":{..}}
 *
 * `before` is the JS heap as the collector left it, `after` the same after a forced full
 * collection (what is live), `types` the object counts by type after it (every type),
 * `jitKb` the resident anonymous executable memory (the JIT's code, from
 * /proc/self/smaps), `mallocKb` mimalloc's small and huge allocations as its statistics
 * say (frees on other threads make them drift: a hint, not a measure), `extra` what the
 * caller counts (the agent's own tables). The forced collection changes what it measures
 * (a full GC every 30 s keeps the heap and the JIT's code smaller than they would be):
 * WEAVE_DEBUG_HEAP_GC=0 leaves it out (no `after`; `types` then counts garbage too), to
 * watch an agent's memory as it is. SIGUSR2 also writes a heap snapshot
 * (Bun.generateHeapSnapshot) to <file>.<t>.heapsnapshot.
 */
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";

type Sample = {
  heapSize: number;
  heapCapacity: number;
  extraMemorySize: number;
  objectCount: number;
  mallocKb: number;
  committedKb: number;
};

type Mimalloc = {
  malloc_normal?: { current?: number };
  malloc_huge?: { current?: number };
  committed?: { current?: number };
};

function status(): { rssAnonKb: number; rssKb: number } {
  const s = readFileSync("/proc/self/status", "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? 0);
  return { rssAnonKb: kb("RssAnon"), rssKb: kb("VmRSS") };
}

/** Resident anonymous memory of executable mappings without a file: the JIT's code. */
function jitKb(): number {
  let kb = 0;
  let exec = false;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const m = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m) exec = m[1]![2] === "x" && m[2] === "0" && m[3] === "";
    else if (exec && line.startsWith("Anonymous:")) kb += Number(/(\d+)/.exec(line)?.[1] ?? 0);
  }
  return kb;
}

export function startHeapDebug(
  file: string,
  opts: { everyS?: number; gc?: boolean; extra?: () => Record<string, number>; log?: (m: string) => void } = {},
): () => void {
  const gc = opts.gc ?? true;
  // bun:jsc only when asked for: the agent never loads it otherwise.
  const jsc = require("bun:jsc") as typeof import("bun:jsc");
  const t0 = Date.now();
  const sample = (): { s: Sample; types: Record<string, number> } => {
    const h = jsc.heapStats() as ReturnType<typeof jsc.heapStats> & { mimalloc?: Mimalloc };
    const m = h.mimalloc ?? {};
    return {
      s: {
        heapSize: h.heapSize,
        heapCapacity: h.heapCapacity,
        extraMemorySize: h.extraMemorySize,
        objectCount: h.objectCount,
        mallocKb: Math.round(((m.malloc_normal?.current ?? 0) + (m.malloc_huge?.current ?? 0)) / 1024),
        committedKb: Math.round((m.committed?.current ?? 0) / 1024),
      },
      types: h.objectTypeCounts as Record<string, number>,
    };
  };
  const tick = () => {
    try {
      const mem = status();
      const first = sample();
      if (gc) Bun.gc(true);
      const { s: after, types } = gc ? sample() : first;
      const line = {
        t: Date.now(),
        up: Math.round((Date.now() - t0) / 1000),
        ...mem,
        jitKb: jitKb(),
        before: first.s,
        ...(gc ? { after } : {}),
        types,
        extra: opts.extra?.() ?? {},
      };
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch (e) {
      opts.log?.(`debug heap: ${(e as Error).message}`);
    }
  };
  const timer = setInterval(tick, (opts.everyS ?? 30) * 1000);
  timer.unref?.();
  const snapshot = () => {
    try {
      const path = `${file}.${Date.now()}.heapsnapshot`;
      writeFileSync(path, JSON.stringify(Bun.generateHeapSnapshot()));
      opts.log?.(`debug heap: snapshot written to ${path}`);
    } catch (e) {
      opts.log?.(`debug heap: snapshot failed: ${(e as Error).message}`);
    }
  };
  process.on("SIGUSR2", snapshot);
  const how = gc ? "a forced GC each time" : "no forced GC";
  opts.log?.(`debug heap: tracing memory to ${file} every ${opts.everyS ?? 30} s, ${how} (WEAVE_DEBUG_HEAP)`);
  tick();
  return () => {
    clearInterval(timer);
    process.off("SIGUSR2", snapshot);
  };
}
