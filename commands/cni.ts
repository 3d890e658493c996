/**
 * `weave cni`: the CNI plugin's process edge (env, stdin, stdout, exit code).
 * Output goes through Bun.write and console.error, not process.stdout/stderr: creating
 * those Node streams costs ~10 ms each, more than the whole ADD.
 */
import { fstatSync } from "node:fs";
import { runPlugin } from "../net/cni/plugin.ts";
import { AgentClient } from "../net/host/agent-client.ts";

export async function run(): Promise<number> {
  // A runtime always pipes the config in; a terminal on stdin means a person typed the
  // command, and waiting for them to type JSON would look like a hang.
  const stdin = fstatSync(0).isCharacterDevice() ? "" : await Bun.stdin.text();
  const out = await runPlugin(process.env, stdin, {
    agent: new AgentClient(),
    pid: process.pid,
    log: (m) => console.error(`weave-net[${process.env.CNI_COMMAND ?? "-"}${process.env.CNI_CONTAINERID ? ` ${process.env.CNI_CONTAINERID}` : ""}]: ${m}`),
  });
  await Bun.write(Bun.stdout, out.stdout);
  return out.exitCode;
}
