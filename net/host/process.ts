/** Processes by pid: whether one runs, and stopping one (the lab's agents and control plane). */
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
