/**
 * `bun run build`: dist/weave (single binary) and dist/cni/weave-net (the same file, under
 * the plugin's name). Code splitting keeps what only some commands load (the Kubernetes
 * client, YAML) in chunks of their own inside the binary, so the plugin, which runs once
 * per pod, starts in ~6 ms instead of ~12; bytecode spares the parse at every start.
 *
 * Worker threads need their entry file as an entrypoint of its own (Bun bundles each one
 * separately into the binary, at /$bunfs/root/<its path from the common root>.js); the
 * first entrypoint is the executable's main. Tests that compile a binary of their own
 * import these lists, so it is built as the product is.
 */
import { mkdirSync, rmSync, linkSync, copyFileSync } from "node:fs";

export const COMPILE_FLAGS = ["--compile", "--bytecode", "--minify", "--splitting", "--format=esm"];
/** Entry files of Worker threads (see net/host/sleeve.ts, which finds its worker there). */
export const WORKER_ENTRYPOINTS = ["net/host/sleeve-worker.ts"];

if (import.meta.main) {
  rmSync("dist", { recursive: true, force: true });
  mkdirSync("dist/cni", { recursive: true });
  const r = Bun.spawnSync(
    ["bun", "build", ...COMPILE_FLAGS, "--outfile", "dist/weave", "cli.ts", ...WORKER_ENTRYPOINTS],
    { stdout: "inherit", stderr: "inherit" },
  );
  if (r.exitCode !== 0) process.exit(r.exitCode ?? 1);
  try {
    linkSync("dist/weave", "dist/cni/weave-net");
  } catch {
    copyFileSync("dist/weave", "dist/cni/weave-net");
  }
  console.log("built dist/weave and dist/cni/weave-net");
}
