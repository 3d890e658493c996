/** `weave status` and `weave report`: what the local agent knows. */
import { AgentClient } from "../net/host/agent-client.ts";
import { WeaveError } from "../net/errors.ts";
import { CniError } from "../net/cni/errors.ts";

async function ask<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof CniError) throw new WeaveError("E_AGENT_UNREACHABLE", e.message);
    throw e;
  }
}

export async function run(what: string | undefined, o: { agent: string }): Promise<number> {
  const client = new AgentClient(o.agent);
  if (what === undefined) {
    const s = await ask(() => client.status());
    process.stdout.write(s.text + "\n");
    return s.ready ? 0 : 1;
  }
  if (what === "ipam") {
    const list = await ask(() => client.list());
    for (const a of list) process.stdout.write(`${a.address.padEnd(18)} ${a.containerId} ${a.ifname}${a.pod ? ` ${a.pod}` : ""}\n`);
    return 0;
  }
  throw new WeaveError("E_USAGE", `unknown status section "${what}" (try: ipam)`);
}

export async function report(o: { agent: string }): Promise<number> {
  const r = await ask(() => new AgentClient(o.agent).report());
  process.stdout.write(JSON.stringify(r, null, 2) + "\n");
  return 0;
}
