/**
 * An exclusive advisory lock on a file (flock(2)), held while `fn` runs. The kernel drops
 * it when the process dies, so a crashed holder never leaves it taken. Used where two
 * processes read-modify-write one state file (the lab's lab.json: the CLI and the lab's
 * control plane). `fn` is synchronous: the lock is held by the process, not a task.
 */
import { closeSync, openSync } from "node:fs";
import { errno, libc, strerror } from "./libc.ts";

const LOCK_EX = 2;
const EINTR = 4;

export function withFileLock<T>(path: string, fn: () => T): T {
  const fd = openSync(path, "a");
  try {
    while (libc.flock(fd, LOCK_EX) !== 0) {
      const code = errno();
      if (code !== EINTR) throw new Error(`flock ${path}: ${strerror(code)}`);
    }
    return fn();
  } finally {
    closeSync(fd);
  }
}
