/**
 * Network namespaces: entering one for a synchronous moment, checking that a path is
 * one, and (for the lab and tests) creating and deleting named ones.
 *
 * Trap (see the machine notes): anything asynchronous started while this thread is
 * switched sees the other namespace, so `inNetns` takes a synchronous function only.
 */
import { closeSync, existsSync, openSync, statfsSync } from "node:fs";
import { CLONE_NEWNET, errno, libc } from "./libc.ts";
import { NetlinkError } from "./netlink.ts";

const NSFS_MAGIC = 0x6e736673;
const PROC_FS_MAGIC = 0x9fa0;

export type NetnsCheck = { ok: true } | { ok: false; reason: string };

/** Is `path` a network namespace handle (a bind mount of nsfs, or /proc/<pid>/ns/net)? */
export function checkNetnsPath(path: string): NetnsCheck {
  if (!path.startsWith("/")) return { ok: false, reason: "is not an absolute path" };
  if (!existsSync(path)) return { ok: false, reason: "does not exist" };
  try {
    const type = Number(statfsSync(path).type);
    if (type === NSFS_MAGIC || type === PROC_FS_MAGIC) return { ok: true };
    return { ok: false, reason: "is not a network namespace (a plain file or directory)" };
  } catch (e) {
    return { ok: false, reason: `cannot be read (${(e as Error).message})` };
  }
}

/** Run `fn` with this thread inside the namespace at `path`, then switch back. */
export function inNetns<T>(path: string, fn: () => T): T {
  const self = openSync("/proc/thread-self/ns/net", "r");
  let target = -1;
  try {
    target = openSync(path, "r");
    if (libc.setns(target, CLONE_NEWNET) !== 0) throw new NetlinkError(`setns ${path}`, errno());
    try {
      return fn();
    } finally {
      if (libc.setns(self, CLONE_NEWNET) !== 0) {
        // Staying in the wrong namespace would make every later step lie; stop here.
        process.stderr.write(`fatal: cannot return to the original network namespace (errno ${errno()})\n`);
        process.exit(70);
      }
    }
  } finally {
    if (target >= 0) closeSync(target);
    closeSync(self);
  }
}

export const NETNS_DIR = "/var/run/netns";

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

/** Create a named namespace (as `ip netns add` does) with its loopback up. */
export function createNamedNetns(name: string): string {
  run(["ip", "netns", "add", name]);
  run(["ip", "-n", name, "link", "set", "lo", "up"]);
  return netnsPath(name);
}

/** Delete a named namespace; true if it existed. */
export function deleteNamedNetns(name: string): boolean {
  if (!existsSync(netnsPath(name))) return false;
  run(["ip", "netns", "delete", name]);
  return true;
}

export function listNamedNetns(): string[] {
  const r = Bun.spawnSync(["ip", "netns", "list"]);
  return r.stdout
    .toString()
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
}

function run(cmd: string[]): void {
  const r = Bun.spawnSync(cmd, { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
}
