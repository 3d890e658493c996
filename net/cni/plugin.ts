/**
 * The weave-net CNI plugin, runtime side: ADD, DEL, CHECK, GC, STATUS, VERSION.
 *
 * It validates the environment and the configuration, answers VERSION, and hands every
 * other command to the node's agent (net/agent/cni-exec.ts does the work), then renders
 * the answer in the configuration's cniVersion. `runPlugin` takes env, stdin and the
 * agent client as arguments and returns what to print and the exit code, so tests call
 * it without touching process state. The one place that turns an unexpected exception
 * into code 999 is at the bottom of `runPlugin`.
 */
import { CniCode, CniError, type CniCodeValue } from "./errors.ts";
import { parseEnv, parseNetConf } from "./config.ts";
import { chainResult, resultForVersion } from "./result.ts";
import { CURRENT_VERSION, SUPPORTED_VERSIONS } from "./version.ts";
import type { CniReply, CniRequest } from "./wire.ts";

export interface AgentCni {
  /** Send a request to the agent; throws CniError 11 when the agent cannot be reached. */
  cni(req: CniRequest): Promise<CniReply>;
}

export type PluginDeps = { agent: AgentCni; log(msg: string): void; pid?: number };
export type PluginOutput = { stdout: string; exitCode: number };

export async function runPlugin(
  env: Record<string, string | undefined>,
  stdin: string,
  deps: PluginDeps,
): Promise<PluginOutput> {
  let version = CURRENT_VERSION;
  try {
    const e = parseEnv(env);
    if (e.command === "VERSION") return ok({ cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] });
    const conf = parseNetConf(stdin, e.command);
    version = conf.cniVersion;
    const { path: _path, ...call } = e;
    let reply: CniReply;
    try {
      reply = await deps.agent.cni({ ...call, command: e.command, conf, pid: deps.pid });
    } catch (err) {
      // STATUS reports an unreachable agent as "not available", not "try later".
      if (e.command === "STATUS" && err instanceof CniError) throw new CniError(CniCode.NotAvailable, err.message);
      throw err;
    }
    if (!reply.ok) throw new CniError(reply.code as CniCodeValue, reply.msg, reply.details);
    if (e.command === "ADD") return ok(resultForVersion(chainResult(conf.prevResult, reply.result!), version));
    return ok();
  } catch (err) {
    if (!(err instanceof CniError)) deps.log(`unexpected error: ${(err as Error)?.stack ?? err}`);
    const ce =
      err instanceof CniError
        ? err
        : new CniError(CniCode.Internal, `unexpected error: ${(err as Error)?.message ?? err}`);
    deps.log(`error ${ce.code}: ${ce.message}`);
    return { stdout: `${JSON.stringify(ce.toJSON(version))}\n`, exitCode: 1 };
  }
}

function ok(body?: unknown): PluginOutput {
  return { stdout: body === undefined ? "" : `${JSON.stringify(body)}\n`, exitCode: 0 };
}
