/**
 * `weave setup-cni`: what the DaemonSet's init container runs. Installs this binary as
 * the weave-net plugin and writes 10-weave.conflist, each by writing a temporary file
 * and renaming it, so kubelet never sees half a file. Other files are left alone.
 *
 * It refuses to install beside another network's config (two network plugins on one
 * node is a classic outage: the runtime wires pods with whichever config sorts first
 * while both networks program routes and firewall rules) unless --force. Every
 * *.conf, *.conflist and *.json file other than ours counts, except:
 * - configs whose only plugin type is `loopback` (a runtime helper, not a network);
 * - configs naming our own plugin `weave-net` (an older weave's file);
 * - files that are not JSON or name no plugin (runtimes skip those too).
 * The refusal goes to the log, to the termination message (kubectl describe pod), and,
 * in a cluster with the node's name known, to a WeaveCNIConflict event on the Node.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { CONFLIST_FILE, PLUGIN_NAME, weaveConflist } from "../net/cni/conflist.ts";
import { WeaveError } from "../net/errors.ts";
import { selfExecutable } from "./self.ts";

/** The event reason on the Node when setup-cni refuses. */
export const CONFLICT_REASON = "WeaveCNIConflict";
const CONFIG_EXT = /\.(conf|conflist|json)$/;
const NOT_A_NETWORK = new Set(["loopback"]);

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
  writeFileSync(tmpConf, `${JSON.stringify(weaveConflist(), null, 2)}\n`, { mode: 0o644 });
  renameSync(tmpConf, conflist);
  return { plugin, conflist };
}

/** Another network's config file, with the plugin types it names. */
export type CniConflict = { file: string; types: string[] };

/** The config files in `confDir` that belong to another network, and the ones passed over (with why). */
export function findConflicts(confDir: string): { conflicts: CniConflict[]; ignored: { file: string; why: string }[] } {
  const conflicts: CniConflict[] = [];
  const ignored: { file: string; why: string }[] = [];
  const names = existsSync(confDir) ? readdirSync(confDir).sort() : [];
  for (const name of names) {
    const file = join(confDir, name);
    if (name === CONFLIST_FILE || !CONFIG_EXT.test(name) || !isFile(file)) continue;
    const types = pluginTypes(readFileSync(file, "utf8"));
    if (types === undefined) ignored.push({ file, why: "not JSON, so no runtime uses it" });
    else if (types.length === 0) ignored.push({ file, why: "names no plugin type, so no runtime uses it" });
    else if (types.every((t) => NOT_A_NETWORK.has(t)))
      ignored.push({ file, why: `only ${types.join(", ")}, not a network` });
    else if (types.includes(PLUGIN_NAME)) ignored.push({ file, why: `names our own plugin ${PLUGIN_NAME}` });
    else conflicts.push({ file, types });
  }
  return { conflicts, ignored };
}

/** A regular file, or a link to one (a dangling link is no config). */
function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The plugin types a .conf or .conflist names; undefined when it is not a JSON object. */
function pluginTypes(text: string): string[] | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return undefined;
  const d = doc as { type?: unknown; plugins?: unknown };
  const entries = Array.isArray(d.plugins) ? d.plugins : [d];
  return entries.map((p) => (p as { type?: unknown })?.type).filter((t): t is string => typeof t === "string");
}

/** Why setup-cni will not install beside `conflicts`, naming the files and the way out. */
export function conflictMessage(conflicts: CniConflict[]): string {
  const files = conflicts.map((c) => `${c.file} (plugin types: ${c.types.join(", ")})`).join("; ");
  const first = [...conflicts.map((c) => c.file.split("/").at(-1)!), CONFLIST_FILE].sort()[0];
  const found = `another network's CNI config is on this node: ${files}.`;
  const risk =
    "Two network plugins on one node is a classic outage: " +
    `the container runtime uses the config that sorts first (here ${first}) ` +
    "while both networks program routes and firewall rules.";
  const fix =
    "Not installing weave beside it: " +
    "remove the other network (its DaemonSet, then its config file), or run weave setup-cni with --force.";
  return `${found} ${risk} ${fix}`;
}

/** The flags of `weave setup-cni`. */
export interface SetupCniOptions {
  binDir: string;
  confDir: string;
  force?: boolean;
  /** A kubeconfig for the Node event (in a pod the in-cluster config is used). */
  kubeconfig?: string;
  /** The Node to put the event on (default $HOSTNAME, which the DaemonSet sets to spec.nodeName). */
  nodeName?: string;
}

/** Where setup-cni reads and writes; tests pass their own. */
export interface SetupCniIO {
  env: Record<string, string | undefined>;
  log: (line: string) => void;
  out: (text: string) => void;
  /** Kubernetes shows this file's content as the container's termination message. */
  terminationLog?: string;
}

const realIO: SetupCniIO = {
  env: process.env,
  log: (l) => process.stderr.write(`weave setup-cni: ${l}\n`),
  out: (t) => process.stdout.write(t),
  terminationLog: "/dev/termination-log",
};

export async function run(o: SetupCniOptions, io: SetupCniIO = realIO): Promise<number> {
  const { conflicts, ignored } = findConflicts(o.confDir);
  for (const i of ignored) io.log(`passing over ${i.file}: ${i.why}`);
  if (conflicts.length && o.force)
    io.log(`--force: installing beside ${conflicts.map((c) => c.file).join(", ")} anyway`);
  if (conflicts.length && !o.force) await refuse(o, io, conflictMessage(conflicts));

  const self = selfExecutable();
  if (!self.compiled)
    throw new WeaveError(
      "E_NOT_COMPILED",
      "setup-cni installs the compiled binary; run it from dist/weave (bun run build)",
    );
  const r = installCni(o.binDir, o.confDir, self.path);
  io.out(`installed ${r.plugin}\nwrote ${r.conflist}\n`);
  return 0;
}

/** Says why everywhere someone may look, then throws E_CNI_CONFLICT. */
async function refuse(o: SetupCniOptions, io: SetupCniIO, message: string): Promise<never> {
  io.log(message);
  if (io.terminationLog && existsSync(io.terminationLog)) {
    try {
      writeFileSync(io.terminationLog, message);
    } catch {
      /* only a nicety */
    }
  }
  const node = o.nodeName ?? io.env.HOSTNAME;
  const inCluster = !!io.env.KUBERNETES_SERVICE_HOST || o.kubeconfig !== undefined;
  if (inCluster && node) {
    try {
      // Loaded only here: the client library is big and this is the rare path.
      const { loadKubeConfig } = await import("../net/k8s/client.ts");
      const { recordNodeEvent } = await import("../net/k8s/install.ts");
      await recordNodeEvent(
        loadKubeConfig({ kubeconfig: o.kubeconfig, env: io.env }),
        node,
        CONFLICT_REASON,
        message,
        "weave-setup-cni",
      );
      io.log(`recorded event ${CONFLICT_REASON} on node ${node} (kubectl describe node ${node})`);
    } catch (e) {
      io.log(`could not record event ${CONFLICT_REASON} on node ${node}: ${(e as Error).message}`);
    }
  } else if (inCluster) {
    io.log(`no event recorded: the node's name is unknown (set HOSTNAME or --node-name)`);
  }
  throw new WeaveError("E_CNI_CONFLICT", message);
}
