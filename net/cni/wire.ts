/**
 * What the plugin sends the agent (POST /cni) and what comes back. The plugin parses
 * and validates its inputs, the agent does the work: it keeps the allocator, has the
 * netlink machinery warm, and serialises every attachment change on the node. The call
 * goes over the agent's root-only unix socket (`socket` in the network configuration,
 * default DEFAULT_AGENT_SOCKET), never over TCP.
 */
import type { CniEnv, NetConf } from "./config.ts";
import type { Result } from "./result.ts";

/** Where the agent serves what changes state (the CNI calls, /ip, rmpeer): root only. */
export const DEFAULT_AGENT_SOCKET = "/run/weave/weave.sock";

export type CniRequest = Omit<CniEnv, "path"> & {
  conf: NetConf;
  /**
   * The plugin's pid: the agent opens CNI_NETNS through /proc/<pid>/root, i.e. as the
   * plugin sees it. The agent takes it from the socket's peer credentials (the kernel),
   * never from the request.
   */
  pid?: number;
};

export type CniReply = { ok: true; result?: Result } | { ok: false; code: number; msg: string; details?: string };
