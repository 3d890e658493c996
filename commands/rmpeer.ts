/** `weave rmpeer <peer>`: the local agent takes over the address space of a peer gone for good. */
import { DEFAULT_AGENT_URL } from "../net/host/agent-client.ts";
import { WeaveError } from "../net/errors.ts";

export async function run(peer: string, o: { agent?: string }): Promise<number> {
  const base = o.agent ?? DEFAULT_AGENT_URL;
  let r: Response;
  try {
    r = await fetch(`${base}/peer/${encodeURIComponent(peer)}`, {
      method: "DELETE",
      signal: AbortSignal.timeout(10000),
    });
  } catch (e) {
    throw new WeaveError(
      "E_AGENT_UNREACHABLE",
      `weave agent at ${base} is not reachable (${(e as { code?: string }).code ?? (e as Error).message})`,
    );
  }
  const text = (await r.text()).trim();
  if (!r.ok) throw new WeaveError(r.status === 404 ? "E_NO_PEER" : "E_PEER_ALIVE", text);
  process.stdout.write(`${text}\n`);
  return 0;
}
