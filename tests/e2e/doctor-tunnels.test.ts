/**
 * `weave doctor --lab` on a 3-node lab with a password: healthy, every check passes and
 * `tunnels` says every pair has a live WireGuard tunnel. Then UDP 6785 is dropped on one
 * node by an nftables table of this test's own and that node's wireguard-go is killed
 * (by its pid file; the agent starts it again), so its new device completes no handshake:
 * doctor exits 1, `tunnels` names that node, its pairs, "no handshake yet", the rule, and
 * the fix (UDP 6785, the agents' logs). The table removed, the tunnels come back and
 * doctor exits 0 again. The table is removed, and the lab brought down, even on failure.
 *
 * Doctor runs from the source (bun cli.ts); the lab's agents are the built binaries.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { canRunHost, ROOT, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { until } from "../support/wait.ts";
import { labDown, labUp, wgSocketDir } from "../../net/lab/lab.ts";
import { findNode, mustReadLab, readLab, type LabState } from "../../net/lab/state.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { pidAlive } from "../../net/host/process.ts";

const haveTools = ["wireguard-go", "nft"].every((t) => Bun.which(t));
const TABLE = "doctortunnels";

type Check = { name: string; status: string; node: string | null; evidence: string; fix: string };
type Run = { code: number; checks: Check[]; stderr: string };

async function doctor(name: string): Promise<Run> {
  const p = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "doctor", "--lab", name, "-o", "json"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  let checks: Check[] = [];
  try {
    checks = (JSON.parse(stdout) as { checks: Check[] }).checks;
  } catch {
    /* left empty: the assertions say what came out */
  }
  return { code, checks, stderr };
}

async function doctorUntil(name: string, ok: (r: Run) => boolean, ms: number): Promise<Run> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await doctor(name);
    if (ok(r) || Date.now() > end) return r;
    await Bun.sleep(500);
  }
}

const describeRun = (r: Run) =>
  `exit ${r.code}; not passing: ${JSON.stringify(
    r.checks.filter((c) => c.status !== "pass"),
    null,
    1,
  )}\n${r.stderr}`;

describe.skipIf(!canRunHost || !haveTools)("weave doctor's tunnels check on a lab with a password", () => {
  const name = uniqueName("dt");
  let s: LabState;
  let n1: LabState["nodes"][number];
  const dropTable = () => inNs(n1.netns, ["nft", "delete", "table", "inet", TABLE]);

  beforeAll(async () => {
    s = await labUp(name, 3, 1, tools, { password: new Uint8Array(randomBytes(24)) });
    n1 = s.nodes[0]!;
  }, 180_000);
  afterAll(async () => {
    if (n1) dropTable();
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("healthy: exit 0, every pair has a live tunnel", async () => {
    const r = await doctorUntil(name, (x) => x.code === 0, 60_000);
    expect(r.code, describeRun(r)).toBe(0);
    const t = r.checks.filter((c) => c.name === "tunnels");
    expect(t).toHaveLength(1);
    expect(t[0]!.status).toBe("pass");
    expect(t[0]!.evidence).toStartWith("3 pairs of peers have live tunnels (wireguard-go)");
    // the fail-closed table is no firewall in the way
    expect(
      r.checks.filter((c) => c.name === "udp-6784" && c.status !== "pass"),
      describeRun(r),
    ).toEqual([]);
  }, 90_000);

  test("UDP 6785 dropped on one node: tunnels names it, the pairs, the rule and the fix; heals once removed", async () => {
    const rule = "udp dport 6785 drop";
    const add = inNs(n1.netns, ["nft", "-f", "-"], {
      stdin: `table inet ${TABLE} {\n chain input { type filter hook input priority 0; policy accept; ${rule}; }\n}\n`,
    });
    expect(add.code, add.stderr).toBe(0);
    try {
      // a new wireguard-go on n1 has no session: it can complete no handshake through the drop
      const pidFile = join(wgSocketDir(findNode(mustReadLab(name), n1.name)), "weave-wg.pid");
      const wgPid = () => Number(readFileSync(pidFile, "utf8").trim());
      const old = wgPid();
      process.kill(old, "SIGKILL");
      await until(() => pidAlive(wgPid()) && wgPid() !== old, 15_000, 50, "wireguard-go not restarted");

      const r = await doctorUntil(
        name,
        (x) => x.code === 1 && x.checks.some((c) => c.name === "tunnels" && c.status === "fail" && c.node === n1.name),
        30_000,
      );
      expect(r.code, describeRun(r)).toBe(1);
      const hit = r.checks.find((c) => c.name === "tunnels" && c.status === "fail" && c.node === n1.name)!;
      expect(hit, describeRun(r)).toBeDefined();
      expect(hit.evidence).toStartWith("2 pairs without a live tunnel:");
      for (const other of s.nodes.slice(1))
        expect(hit.evidence).toContain(`no handshake yet between ${n1.name} and ${other.name}`);
      expect(hit.evidence).toContain(`nftables on ${n1.name} drops UDP 6785: "${rule}" (table inet ${TABLE})`);
      expect(hit.fix).toStartWith(`open UDP 6785 between ${n1.name} and the other nodes`);
      expect(hit.fix).toContain(join(n1.dataDir, "agent.log"));
      // named once: no other node is blamed for it
      expect(r.checks.filter((c) => c.name === "tunnels" && c.status === "fail").map((c) => c.node)).toEqual([n1.name]);
    } finally {
      const del = dropTable();
      expect(del.code, del.stderr).toBe(0);
    }
    const healed = await doctorUntil(
      name,
      (x) => x.checks.some((c) => c.name === "tunnels" && c.status === "pass") && x.code === 0,
      90_000,
    );
    expect(healed.code, describeRun(healed)).toBe(0);
  }, 180_000);
});
