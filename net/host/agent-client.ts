/**
 * The CNI plugin's client for the local agent: POST /cni over the agent's root-only unix
 * socket (the configuration's `socket`, default /run/weave/weave.sock); the read-only API
 * stays on 127.0.0.1:6784. Failures to reach the agent are CniError 11 (try again later):
 * the runtime retries, and the message says what to look at.
 */
import { CniCode, CniError } from "../cni/errors.ts";
import { type CniReply, type CniRequest, DEFAULT_AGENT_SOCKET } from "../cni/wire.ts";

/** The agent's read-only HTTP API (status, report, GET /ip). */
export const DEFAULT_AGENT_URL = "http://127.0.0.1:6784";

export class AgentClient {
  constructor(private timeoutMs = 15000) {}

  private async call(socket: string, method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(`http://weave${path}`, {
        unix: socket,
        method,
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      });
    } catch (e) {
      const why = (e as { code?: string }).code ?? (e as Error).name;
      throw new CniError(
        CniCode.TryAgainLater,
        `weave agent at ${socket} is not reachable (${why}); is the weave agent running on this node? try again later`,
        undefined,
        { cause: e },
      );
    }
  }

  private async fail(r: Response, what: string): Promise<never> {
    const text = (await r.text()).trim();
    const code = r.status === 503 ? CniCode.TryAgainLater : r.status === 400 ? CniCode.InvalidConfig : CniCode.Internal;
    throw new CniError(code, `weave agent refused to ${what}: ${r.status} ${text}`);
  }

  /** Hand a CNI command to the agent (see net/cni/wire.ts). */
  async cni(req: CniRequest): Promise<CniReply> {
    const r = await this.call(req.conf.socket ?? DEFAULT_AGENT_SOCKET, "POST", "/cni", req);
    if (r.status !== 200) return this.fail(r, `run ${req.command}`);
    return (await r.json()) as CniReply;
  }
}
