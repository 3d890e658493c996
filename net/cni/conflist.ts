/** The CNI network configuration list setup-cni writes (and the lab feeds the plugin). */

export const CONFLIST_FILE = "10-weave.conflist";
export const NETWORK_NAME = "weave";
export const PLUGIN_NAME = "weave-net";

export type Conflist = { cniVersion: string; name: string; plugins: Record<string, unknown>[] };

/** The conflist; `socket` names the agent's unix socket when it is not the default (the lab's nodes). */
export function weaveConflist(socket?: string): Conflist {
  return {
    cniVersion: "1.0.0",
    name: NETWORK_NAME,
    plugins: [
      { name: NETWORK_NAME, type: PLUGIN_NAME, hairpinMode: true, ...(socket ? { socket } : {}) },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
}

/** One plugin's stdin as a runtime builds it from a conflist (name and cniVersion copied in). */
export function pluginConfig(list: Conflist, index: number, prevResult?: unknown): Record<string, unknown> {
  return {
    ...list.plugins[index],
    cniVersion: list.cniVersion,
    name: list.name,
    ...(prevResult ? { prevResult } : {}),
  };
}
