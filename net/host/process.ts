/**
 * Processes by pid: whether one runs, and stopping one (the lab's agents and control
 * plane); and our own process's garbage collection.
 */
import { readFileSync } from "node:fs";

/** Is `pid` running? A zombie (dead, not yet reaped by its parent) is not. */
export function pidAlive(pid: number): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const end = stat.lastIndexOf(")");
    return stat.slice(end + 2, end + 3) !== "Z";
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs` if it is still there. */
export async function stopPid(pid: number, graceMs = 2000): Promise<void> {
  if (!pid || !pidAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let waited = 0; waited < graceMs && pidAlive(pid); waited += 20) await Bun.sleep(20);
  if (pidAlive(pid)) process.kill(pid, "SIGKILL");
}

/** How often a daemon collects its garbage (below). */
export const GC_EVERY_MS = 60_000;

/**
 * A full collection every `everyMs`, for a daemon (the agent, npc). Bun collects when the
 * heap grows or the process is idle; a daemon whose live heap is small and steady (the
 * agent: ~13 MB) leaves the garbage of rare work (a peer's reconnection, a policy change)
 * for a long time, and its allocator keeps the pages. Bun.gc(true) collects and has
 * mimalloc give freed pages back. Measured on the agent: 10-27 ms a collection on 2 busy
 * vCPUs. Go's runtime, which Weave Net ran on, forces a collection every 2 minutes.
 */
export function collectGarbageEvery(everyMs = GC_EVERY_MS): () => void {
  const timer = setInterval(() => Bun.gc(true), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
