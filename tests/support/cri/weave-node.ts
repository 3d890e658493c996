/**
 * What weave holds on any lab node, for tests that run pods on more than the first node
 * (TestLab's held() and veths() look at node 1 only): the agent's allocations from
 * `weave status ipam`, and the node's vethwepl* links once pending deletions are done
 * (DEL retires a veth into link group 30565, which the agent deletes about a second later).
 */
import { WEAVE } from "../env.ts";

const PENDING_GROUP = / group 30565 /;

/** Run `cmd` in the named network namespace (nsenter: keeps this mount namespace and /sys). */
export function inNs(netns: string, cmd: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(["nsenter", `--net=/var/run/netns/${netns}`, ...cmd], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** `weave status ipam` allocation lines on `netns`, "10.32.0.5/12 <id> eth0 [ns/pod]", without weave:expose. */
export function heldOn(netns: string): string[] {
  return inNs(netns, [WEAVE, "status", "ipam"])
    .stdout.split("\n")
    .filter((l) => /^\d+\.\d+\.\d+\.\d+\/\d+ /.test(l) && !l.includes("weave:expose"));
}

/** vethwepl* links on `netns` once none is pending deletion (waits up to 5 s). */
export async function vethsOn(netns: string): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const lines = inNs(netns, ["ip", "-o", "link", "show"]).stdout.split("\n");
    if (!lines.some((l) => PENDING_GROUP.test(l)))
      return lines.map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? "").filter((n) => n.startsWith("vethwepl"));
    await Bun.sleep(50);
  }
  throw new Error(`pending veths on ${netns} were not deleted within 5 s`);
}
