/**
 * `bun run build`: dist/weave (single binary) and dist/cni/weave-net (the same file, under
 * the plugin's name). Code splitting keeps what only some commands load (the Kubernetes
 * client, YAML) in chunks of their own inside the binary, so the plugin, which runs once
 * per pod, starts in ~6 ms instead of ~12; bytecode spares the parse at every start.
 */
import { mkdirSync, rmSync, linkSync, copyFileSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/cni", { recursive: true });
const r = Bun.spawnSync(
  [
    "bun",
    "build",
    "--compile",
    "--bytecode",
    "--minify",
    "--splitting",
    "--format=esm",
    "--outfile",
    "dist/weave",
    "cli.ts",
  ],
  { stdout: "inherit", stderr: "inherit" },
);
if (r.exitCode !== 0) process.exit(r.exitCode ?? 1);
try {
  linkSync("dist/weave", "dist/cni/weave-net");
} catch {
  copyFileSync("dist/weave", "dist/cni/weave-net");
}
console.log("built dist/weave and dist/cni/weave-net");
