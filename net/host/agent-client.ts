/**
 * The HTTP client for the local agent's API (127.0.0.1:6784), as the CNI plugin and the
 * `status` command use it. Failures to reach the agent are CniError 11 (try again later):
 * the runtime retries, and the message says what to look at.
 */
import { CniCode, CniError } from "../cni/errors.ts";
import type { CniReply, CniRequest } from "../cni/wire.ts";

export const DEFAULT_AGENT_URL = "http://127.0.0.1:6784";

export type Allocation = { containerId: string; ifname: string; address: string; pod?: string };

export class AgentClient {
  constructor(readonly baseUrl = DEFAULT_AGENT_URL, private timeoutMs = 15000) {}

  private async call(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(this.baseUrl + path, {
        method,
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      });
    } catch (e) {
      const why = (e as { code?: string }).code ?? (e as Error).name;
      throw new CniError(
        CniCode.TryAgainLater,
        `weave agent at ${this.baseUrl} is not reachable (${why}); is the weave agent running on this node? try again later`,
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
    const r = await this.call("POST", "/cni", req);
    if (r.status !== 200) return this.fail(r, `run ${req.command}`);
    return (await r.json()) as CniReply;
  }

  /** Allocate (or return the existing) address for an attachment; `created` tells which. */
  async allocate(containerId: string, ifname: string, pod?: string): Promise<{ address: string; created: boolean }> {
    const q = new URLSearchParams({ ifname, ...(pod ? { pod } : {}) });
    const r = await this.call("POST", `/ip/${encodeURIComponent(containerId)}?${q}`);
    if (r.status !== 200 && r.status !== 201) return this.fail(r, `allocate an address for ${containerId}`);
    return { address: (await r.text()).trim(), created: r.status === 201 };
  }

  async release(containerId: string, ifname?: string): Promise<void> {
    const q = ifname ? `?${new URLSearchParams({ ifname })}` : "";
    const r = await this.call("DELETE", `/ip/${encodeURIComponent(containerId)}${q}`);
    if (r.status !== 204 && r.status !== 404 && r.status !== 200) return this.fail(r, `release the address of ${containerId}`);
  }

  async list(): Promise<Allocation[]> {
    const r = await this.call("GET", "/ip");
    if (!r.ok) return this.fail(r, "list allocations");
    const body = (await r.json()) as { owned: { containerid: string; ifname: string; addrs: string[]; pod?: string }[] };
    return body.owned.map((o) => ({ containerId: o.containerid, ifname: o.ifname, address: o.addrs[0]!, pod: o.pod }));
  }

  /** The agent's readiness: `ready` false carries its reason. */
  async status(): Promise<{ ready: boolean; text: string }> {
    const r = await this.call("GET", "/status");
    return { ready: r.status === 200, text: (await r.text()).trim() };
  }

  async report(): Promise<Record<string, unknown>> {
    const r = await this.call("GET", "/report");
    return (await r.json()) as Record<string, unknown>;
  }
}
