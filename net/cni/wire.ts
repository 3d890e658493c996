/**
 * What the plugin sends the agent (POST /cni) and what comes back. The plugin parses
 * and validates its inputs, the agent does the work: it keeps the allocator, has the
 * netlink machinery warm, and serialises every attachment change on the node.
 */
import type { CniEnv, NetConf } from "./config.ts";
import type { Result } from "./result.ts";

export type CniRequest = Omit<CniEnv, "path"> & {
  conf: NetConf;
  /** The plugin's pid: the agent opens CNI_NETNS through /proc/<pid>/root, i.e. as the plugin sees it. */
  pid?: number;
};

export type CniReply = { ok: true; result?: Result } | { ok: false; code: number; msg: string; details?: string };
