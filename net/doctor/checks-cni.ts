/**
 * Exactly one network's CNI config on each node. A runtime uses the first *.conf,
 * *.conflist or *.json file of its conf dir in name order; two networks' configs on
 * one node mean pods are wired by whichever sorts first while both networks program
 * routes and firewalls: a classic outage. Files are classified as setup-cni does
 * (commands/setup-cni.ts): not JSON, no plugin, or only `loopback` is no network.
 */
import { CONFLIST_FILE, PLUGIN_NAME } from "../cni/conflist.ts";
import { localNodes, list, plural, result } from "./result.ts";
import type { CheckResult, CniFile, Facts } from "./types.ts";

const CONFIG_EXT = /\.(conf|conflist|json)$/;
const NOT_A_NETWORK = new Set(["loopback"]);

export type CniConfig = { name: string; types: string[]; ours: boolean };

/** The network configs of a conf dir, in the order a runtime considers them. */
export function networkConfigs(files: CniFile[]): { configs: CniConfig[]; ignored: string[] } {
  const configs: CniConfig[] = [];
  const ignored: string[] = [];
  for (const f of [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (!CONFIG_EXT.test(f.name)) continue;
    const types = pluginTypes(f.text);
    if (!types) ignored.push(`${f.name} (not JSON)`);
    else if (!types.length) ignored.push(`${f.name} (no plugin)`);
    else if (types.every((t) => NOT_A_NETWORK.has(t))) ignored.push(`${f.name} (only ${types.join(", ")})`);
    else configs.push({ name: f.name, types, ours: types.includes(PLUGIN_NAME) });
  }
  return { configs, ignored };
}

function pluginTypes(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  try {
    const doc = JSON.parse(text) as { type?: unknown; plugins?: { type?: unknown }[] };
    if (!doc || typeof doc !== "object") return undefined;
    const list = Array.isArray(doc.plugins) ? doc.plugins.map((p) => p?.type) : [doc.type];
    return list.filter((t): t is string => typeof t === "string");
  } catch {
    return undefined;
  }
}

export function checkCniConfig(f: Facts): CheckResult[] {
  const out: CheckResult[] = [];
  for (const n of localNodes(f)) {
    if (!n.cni) continue;
    const dir = n.cni.dir;
    if (n.cni.error) {
      out.push(
        result(
          "cni-config",
          f.mode === "lab" && !dir ? "warn" : "fail",
          n.name,
          n.cni.error,
          dir
            ? `write weave's config: weave setup-cni --conf-dir ${dir} (the DaemonSet's init container does this)`
            : "bring the lab up again with this weave (older labs have no conf dir per node)",
        ),
      );
      continue;
    }
    const { configs, ignored } = networkConfigs(n.cni.files);
    const note = ignored.length ? `; passed over ${list(ignored, 3)}` : "";
    const ours = configs.filter((c) => c.ours);
    const others = configs.filter((c) => !c.ours);
    if (!ours.length && !others.length) {
      out.push(
        result(
          "cni-config",
          "fail",
          n.name,
          `no network config in ${dir}${note}`,
          `write weave's config: weave setup-cni --conf-dir ${dir} (the DaemonSet's init container does this); kubelet keeps the node NotReady without one`,
        ),
      );
    } else if (others.length) {
      const first = configs[0]!;
      const what = list(others.map((c) => `${c.name} (${c.types.join(", ")})`));
      const held = plural(configs.length, "network config");
      const weaves = list(ours.map((c) => c.name));
      const uses = `the runtime uses ${first.name}${note}`;
      const evidence = ours.length
        ? `${dir} holds ${held}: another network's ${what} beside weave's ${weaves}; ${uses}`
        : `${dir} has no weave config, only another network's ${what}; ${uses}`;
      const fix = ours.length
        ? `remove the other network's config from ${dir} (and uninstall that network), then delete the pods it wired`
        : `if weave is this node's network: remove the other network's config from ${dir}, then write weave's: weave setup-cni --conf-dir ${dir}`;
      out.push(result("cni-config", "fail", n.name, evidence, fix));
    } else if (ours.length > 1) {
      out.push(
        result(
          "cni-config",
          "fail",
          n.name,
          `${dir} holds ${ours.length} weave configs: ${list(ours.map((c) => c.name))}; the runtime uses ${ours[0]!.name}`,
          `keep only ${CONFLIST_FILE} in ${dir}`,
        ),
      );
    } else
      out.push(
        result("cni-config", "pass", n.name, `${dir}: only ${ours[0]!.name} (${ours[0]!.types.join(", ")})${note}`),
      );
  }
  return out;
}
