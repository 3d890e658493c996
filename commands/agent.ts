/** `weave agent`: settings from flags and env, then the agent and its HTTP API. */
import { Agent } from "../net/agent/agent.ts";
import { handleApi } from "../net/agent/api.ts";
import { parseCidr, CidrError } from "../net/cidr.ts";
import { WeaveError } from "../net/errors.ts";
import { openHost } from "../net/host/host.ts";
import { checkNetnsPath } from "../net/host/netns.ts";
import { Store } from "../net/host/store.ts";
import { hostname } from "node:os";

export type AgentOptions = { dataDir: string; ipallocRange?: string; mtu?: string | number; bridge: string; httpAddr: string; nickname?: string };

const log = (m: string) => process.stderr.write(`${new Date().toISOString()} weave-agent: ${m}\n`);

export function parseAgentOptions(o: AgentOptions, env: Record<string, string | undefined>) {
  const rangeText = o.ipallocRange ?? env.IPALLOC_RANGE ?? "10.32.0.0/12";
  let range;
  try {
    range = parseCidr(String(rangeText));
  } catch (e) {
    if (e instanceof CidrError) throw new WeaveError("E_BAD_RANGE", `--ipalloc-range / IPALLOC_RANGE ${e.message}`);
    throw e;
  }
  if (range.prefix > 30) throw new WeaveError("E_BAD_RANGE", `--ipalloc-range / IPALLOC_RANGE "${rangeText}" is too small (at most /30)`);
  const mtuText = o.mtu ?? env.WEAVE_MTU;
  let mtu: number | undefined;
  if (mtuText !== undefined && mtuText !== "") {
    mtu = Number(mtuText);
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new WeaveError("E_BAD_MTU", `--mtu / WEAVE_MTU "${mtuText}" is not an integer from 576 to 65535`);
  }
  const m = /^([\d.]+):(\d+)$/.exec(o.httpAddr);
  if (!m) throw new WeaveError("E_BAD_FLAG", `--http-addr "${o.httpAddr}" is not host:port`);
  return { range, mtu, bridge: o.bridge, dataDir: o.dataDir, nickname: o.nickname ?? env.HOSTNAME ?? hostname(), http: { hostname: m[1]!, port: Number(m[2]) } };
}

export async function run(o: AgentOptions): Promise<number> {
  const s = parseAgentOptions(o, process.env);
  if (process.env.WEAVE_PASSWORD) {
    throw new WeaveError("E_NO_ENCRYPTION", "WEAVE_PASSWORD is set, but this agent cannot encrypt yet; unset it rather than run unencrypted while believing otherwise");
  }
  const host = openHost();
  const store = new Store(s.dataDir);
  const agent = new Agent({ range: s.range, mtu: s.mtu, bridge: s.bridge, nickname: s.nickname, dataDir: s.dataDir }, { host, openHost, checkNetns: checkNetnsPath, store, log });
  const server = Bun.serve({ hostname: s.http.hostname, port: s.http.port, fetch: (req) => handleApi(agent, req) });
  log(`API on http://${s.http.hostname}:${s.http.port}, data dir ${s.dataDir}`);
  agent.start();
  const timer = setInterval(() => agent.reconcile(), 5000);

  return await new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log(`${sig}: stopping (the bridge and pods stay as they are)`);
      clearInterval(timer);
      server.stop(true);
      store.close();
      host.close();
      resolve(0);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
