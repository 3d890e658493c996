/** Where this program is, to run it again (agents in the lab) or install it (setup-cni). */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export type Self = { compiled: boolean; path: string; argv: string[]; pluginPath: string };

export function selfExecutable(): Self {
  // A `bun build --compile` binary runs its entry from Bun's virtual /$bunfs.
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.startsWith("B:/~BUN/");
  if (compiled) {
    const path = process.execPath;
    const dir = dirname(path);
    const pluginPath =
      [join(dir, "cni", "weave-net"), join(dir, "weave-net")].find((p) => existsSync(p)) ??
      join(dir, "cni", "weave-net");
    return { compiled, path, argv: [path], pluginPath };
  }
  const root = resolve(import.meta.dir, "..");
  return {
    compiled,
    path: process.execPath,
    argv: [process.execPath, join(root, "cli.ts")],
    pluginPath: join(root, "dist", "cni", "weave-net"),
  };
}
