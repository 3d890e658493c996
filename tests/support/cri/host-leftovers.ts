/**
 * What containerd 1.6 and its CRI plugin write outside the directories its config names,
 * and how a test run removes only its own share of it:
 *
 *  - /run/containerd/s/<sha256(socket + "/" + namespace + "/" + id)>: each shim's ttrpc
 *    socket (the shim's socket root is compiled in); the shim removes it when it exits
 *    cleanly, a killed one leaves it.
 *  - /var/lib/cni/results/<network>-<id>-<ifname>: libcni's result cache (go-cni sets no
 *    cache dir), for weave's network and containerd's "cni-loopback"; DEL removes them.
 *  - cgroups: runc makes <hierarchy>/<cgroup_parent>/<id> in every hierarchy and removes
 *    only the last part; the test gives each run a cgroup parent of its own under `root`,
 *    removed here (rmdir only ever succeeds on an empty cgroup, so nothing live goes).
 *
 * Directories a run created (it checks at construction whether they were there) are
 * pruned when empty; a directory that was there before is never removed.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, rmdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

const SHIM_SOCKETS = "/run/containerd/s";
const CONTAINERD_RUN = "/run/containerd";
const CNI_CACHE = "/var/lib/cni";
const CNI_RESULTS = join(CNI_CACHE, "results");
const CGROUP_FS = "/sys/fs/cgroup";

/** Where containerd's shim for sandbox `id` listens (containerd 1.6 pkg/shim SocketAddress). */
export function shimSocket(containerdSocket: string, namespace: string, id: string): string {
  const hash = createHash("sha256").update(`${containerdSocket}/${namespace}/${id}`).digest("hex");
  return join(SHIM_SOCKETS, hash);
}

/** Remove empty directories under and including `dir`, bottom up; keeps any that hold a file. */
function pruneEmpty(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) pruneEmpty(join(dir, e.name));
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {}
}

/** rmdir a cgroup and its child cgroups, deepest first (their control files go with them). */
function rmCgroup(dir: string, problems: string[]): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmCgroup(join(dir, e.name), problems);
  try {
    rmdirSync(dir);
  } catch (e) {
    problems.push(`rmdir ${dir}: ${(e as Error).message}`);
  }
}

export class HostLeftovers {
  private readonly had = {
    run: existsSync(CONTAINERD_RUN),
    shims: existsSync(SHIM_SOCKETS),
    cniCache: existsSync(CNI_CACHE),
    cniResults: existsSync(CNI_RESULTS),
  };

  /** `cgroupRoot`: this run's cgroup parent root, e.g. "/weave-e2e-1234-ab" (given to every sandbox under it). */
  constructor(readonly cgroupRoot: string) {}

  /** Every cgroup hierarchy's copy of this run's root that exists (v1: one per controller; v2: one). */
  cgroupDirs(): string[] {
    const hierarchies = [CGROUP_FS, ...readdirSync(CGROUP_FS).map((n) => join(CGROUP_FS, n))];
    return hierarchies.map((h) => join(h, this.cgroupRoot)).filter((d) => existsSync(d));
  }

  /** What this run's sandboxes left outside containerd's dirs, as paths (for an assertion). */
  left(sandboxes: { socket: string; id: string }[], networks: string[]): string[] {
    const paths = sandboxes.flatMap((s) => [
      shimSocket(s.socket, "k8s.io", s.id),
      ...networks.map((n) => join(CNI_RESULTS, `${n}-${s.id}-${n === "cni-loopback" ? "lo" : "eth0"}`)),
    ]);
    return paths.filter((p) => existsSync(p));
  }

  /** Remove this run's share; returns what could not be removed. */
  cleanup(sandboxes: { socket: string; id: string }[], networks: string[]): string[] {
    const problems: string[] = [];
    for (const p of this.left(sandboxes, networks)) rmSync(p, { force: true });
    for (const d of this.cgroupDirs()) rmCgroup(d, problems);
    if (!this.had.shims) pruneEmpty(SHIM_SOCKETS);
    if (!this.had.run) pruneEmpty(CONTAINERD_RUN);
    if (!this.had.cniResults) pruneEmpty(CNI_RESULTS);
    if (!this.had.cniCache) pruneEmpty(CNI_CACHE);
    return problems;
  }
}
