/** `weave status [peers|connections|ipam]` and `weave report`: what the local agent knows. */
import { DEFAULT_AGENT_URL } from "../net/host/agent-client.ts";
import { WeaveError } from "../net/errors.ts";

const SECTIONS = ["peers", "connections", "ipam"];

async function get(base: string, path: string): Promise<Response> {
  try {
    return await fetch(base + path, { signal: AbortSignal.timeout(10000) });
  } catch (e) {
    throw new WeaveError(
      "E_AGENT_UNREACHABLE",
      `weave agent at ${base} is not reachable (${(e as { code?: string }).code ?? (e as Error).message}); is it running on this node?`,
    );
  }
}

export async function run(what: string | undefined, o: { agent: string }): Promise<number> {
  if (what !== undefined && !SECTIONS.includes(what))
    throw new WeaveError("E_USAGE", `unknown status section "${what}" (one of ${SECTIONS.join(", ")})`);
  const r = await get(o.agent ?? DEFAULT_AGENT_URL, what ? `/status/${what}` : "/status");
  process.stdout.write(await r.text());
  return r.ok ? 0 : 1;
}

export async function report(o: { agent: string }): Promise<number> {
  const r = await get(o.agent ?? DEFAULT_AGENT_URL, "/report");
  process.stdout.write(`${JSON.stringify(await r.json(), null, 2)}\n`);
  return 0;
}
