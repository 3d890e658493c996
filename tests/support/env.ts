/** What the host and e2e tests need to know about this machine and this checkout. */
import { existsSync } from "node:fs";
import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const WEAVE = resolve(ROOT, "dist/weave");
export const PLUGIN = resolve(ROOT, "dist/cni/weave-net");
export const PLUGIN_DIR = resolve(ROOT, "dist/cni");
export const REF_PLUGINS = "/usr/lib/cni";

export const isRoot = process.getuid?.() === 0;
export const built = existsSync(WEAVE) && existsSync(PLUGIN);
/** Host and e2e tests need root and a built binary; without them they are skipped, loudly. */
export const canRunHost = isRoot && built;
if (!canRunHost)
  console.warn(`host/e2e tests skipped: ${!isRoot ? "not root" : "dist/weave not built (bun run build)"}`);

/** A name unique to this test process, for namespaces and labs ("t" + 5 base36 chars). */
export function uniqueName(prefix = "t"): string {
  return (prefix + (process.pid % 46656).toString(36) + Math.floor(Math.random() * 1296).toString(36)).slice(0, 8);
}
