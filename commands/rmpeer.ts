/** `weave rmpeer <peer>`: the local agent takes over the address space of a peer gone for good. */
import { existsSync } from "node:fs";
import { DEFAULT_AGENT_SOCKET } from "../net/cni/wire.ts";
import { DEFAULT_AGENT_URL } from "../net/host/agent-client.ts";
import { WeaveError } from "../net/errors.ts";

/** The agent's socket: the default, else where the local agent's report says it is (a lab node's). */
async function findSocket(): Promise<string> {
  if (existsSync(DEFAULT_AGENT_SOCKET)) return DEFAULT_AGENT_SOCKET;
  const reported = await fetch(`${DEFAULT_AGENT_URL}/report`, { signal: AbortSignal.timeout(3000) })
    .then((r) => r.json() as Promise<{ Socket?: string }>)
    .catch(() => undefined);
  return reported?.Socket ?? DEFAULT_AGENT_SOCKET;
}

/** A change of the network: over the agent's root-only unix socket. */
export async function run(peer: string, o: { socket?: string }): Promise<number> {
  const socket = o.socket ?? (await findSocket());
  let r: Response;
  try {
    r = await fetch(`http://weave/peer/${encodeURIComponent(peer)}`, {
      unix: socket,
      method: "DELETE",
      signal: AbortSignal.timeout(10000),
    });
  } catch (e) {
    const why = (e as { code?: string }).code ?? (e as Error).message;
    throw new WeaveError(
      "E_AGENT_UNREACHABLE",
      `weave agent at ${socket} is not reachable (${why}); run rmpeer as root`,
    );
  }
  const text = (await r.text()).trim();
  if (r.status === 403) throw new WeaveError("E_NOT_ROOT", text);
  if (!r.ok) throw new WeaveError(r.status === 404 ? "E_NO_PEER" : "E_PEER_ALIVE", text);
  process.stdout.write(`${text}\n`);
  return 0;
}
