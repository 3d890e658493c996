/** `bun run build`: dist/weave (single binary) and dist/cni/weave-net (the same file, under the plugin's name). */
import { mkdirSync, rmSync, linkSync, copyFileSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/cni", { recursive: true });
const r = Bun.spawnSync(["bun", "build", "--compile", "--bytecode", "--minify", "--outfile", "dist/weave", "cli.ts"], { stdout: "inherit", stderr: "inherit" });
if (r.exitCode !== 0) process.exit(r.exitCode ?? 1);
try {
  linkSync("dist/weave", "dist/cni/weave-net");
} catch {
  copyFileSync("dist/weave", "dist/cni/weave-net");
}
console.log("built dist/weave and dist/cni/weave-net");
