/**
 * `weave cni`: the CNI plugin's process edge (env, stdin, stdout, exit code).
 * Output goes through Bun.write and console.error, not process.stdout/stderr: creating
 * those Node streams costs ~10 ms each, more than the whole ADD.
 */
import { runPlugin } from "../net/cni/plugin.ts";
import { COMMANDS, type Command } from "../net/cni/config.ts";
import { AgentClient } from "../net/host/agent-client.ts";

export async function run(): Promise<number> {
  // Only commands that take a configuration read stdin: VERSION ignores it, and without a
  // valid CNI_COMMAND there is nothing to read it for (nor a hang waiting on a terminal).
  const cmd = process.env.CNI_COMMAND;
  const stdin = cmd && cmd !== "VERSION" && COMMANDS.includes(cmd as Command) ? await Bun.stdin.text() : "";
  const out = await runPlugin(process.env, stdin, {
    agent: new AgentClient(),
    pid: process.pid,
    log: (m) =>
      console.error(
        `weave-net[${process.env.CNI_COMMAND ?? "-"}${process.env.CNI_CONTAINERID ? ` ${process.env.CNI_CONTAINERID}` : ""}]: ${m}`,
      ),
  });
  await Bun.write(Bun.stdout, out.stdout);
  return out.exitCode;
}
