/**
 * `weave setup-cni`: what the DaemonSet's init container runs. Installs this binary as
 * the weave-net plugin and writes 10-weave.conflist, each by writing a temporary file
 * and renaming it, so kubelet never sees half a file. Other files are left alone.
 */
import { chmodSync, copyFileSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CONFLIST_FILE, PLUGIN_NAME, weaveConflist } from "../net/cni/conflist.ts";
import { WeaveError } from "../net/errors.ts";
import { selfExecutable } from "./self.ts";

export function installCni(binDir: string, confDir: string, binary: string): { plugin: string; conflist: string } {
  mkdirSync(binDir, { recursive: true });
  mkdirSync(confDir, { recursive: true });
  const plugin = join(binDir, PLUGIN_NAME);
  const tmpPlugin = `${plugin}.tmp-${process.pid}`;
  copyFileSync(binary, tmpPlugin);
  chmodSync(tmpPlugin, 0o755);
  renameSync(tmpPlugin, plugin);
  const conflist = join(confDir, CONFLIST_FILE);
  const tmpConf = `${conflist}.tmp-${process.pid}`;
  writeFileSync(tmpConf, JSON.stringify(weaveConflist(), null, 2) + "\n", { mode: 0o644 });
  renameSync(tmpConf, conflist);
  return { plugin, conflist };
}

export async function run(o: { binDir: string; confDir: string }): Promise<number> {
  const self = selfExecutable();
  if (!self.compiled) throw new WeaveError("E_NOT_COMPILED", "setup-cni installs the compiled binary; run it from dist/weave (bun run build)");
  const r = installCni(o.binDir, o.confDir, self.path);
  process.stdout.write(`installed ${r.plugin}\nwrote ${r.conflist}\n`);
  return 0;
}
