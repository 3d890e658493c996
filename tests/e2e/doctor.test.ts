/**
 * `weave doctor --lab` on a real 3-node lab, one test per classic fault: an agent
 * stopped, UDP 6784 dropped by nftables on one node (the sleeve carries the traffic:
 * datapath warns), UDP 6783 and 6784 dropped (pings fail), a wrong underlay MTU on one node,
 * a route overlapping the pod range, a second CNI conflist, a pod's default route
 * removed. Each time doctor must exit 1 naming the right check, node and a fix, and
 * exit 0 once the fault is undone. The mesh takes a moment to notice some faults (and
 * to heal), so doctor is run again until it says what is expected, within a bound.
 *
 * Doctor runs from the source (bun cli.ts) so these tests need no rebuild; the lab's
 * agents and plugin are the built binaries, as everywhere in tests/e2e.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canRunHost, ROOT, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { labAgent, labDown, labUp } from "../../net/lab/lab.ts";
import { readLab, type LabState } from "../../net/lab/state.ts";
import { inNs } from "../../net/lab/plugin.ts";

type Check = { name: string; status: string; node: string | null; evidence: string; fix: string };
type Run = { code: number; checks: Check[]; stdout: string; stderr: string; ms: number };

async function doctor(name: string, json = true): Promise<Run> {
  const t = Date.now();
  const p = Bun.spawn(
    [process.execPath, join(ROOT, "cli.ts"), "doctor", "--lab", name, ...(json ? ["-o", "json"] : [])],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  let checks: Check[] = [];
  if (json) {
    try {
      checks = (JSON.parse(stdout) as { checks: Check[] }).checks;
    } catch {
      /* left empty: the assertions below say what came out */
    }
  }
  return { code, checks, stdout, stderr, ms: Date.now() - t };
}

const failures = (r: Run) => r.checks.filter((c) => c.status === "fail");
const describeRun = (r: Run) => `exit ${r.code}; failed: ${JSON.stringify(failures(r), null, 1)}\n${r.stderr}`;

/** Run doctor until `ok(run)` holds or `ms` pass; returns the last run. */
async function doctorUntil(name: string, ok: (r: Run) => boolean, ms = 30_000): Promise<Run> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await doctor(name);
    if (ok(r) || Date.now() > end) return r;
    await Bun.sleep(300);
  }
}

const failsWith = (check: string, node: string) => (r: Run) =>
  r.code === 1 && r.checks.some((c) => c.name === check && c.status === "fail" && c.node === node);

/** Doctor exits 1 naming `check` on `node` with a fix; returns that result. */
async function expectFault(name: string, check: string, node: string): Promise<Check> {
  const r = await doctorUntil(name, failsWith(check, node));
  expect(r.code, describeRun(r)).toBe(1);
  const hit = r.checks.find((c) => c.name === check && c.status === "fail" && c.node === node);
  expect(hit, describeRun(r)).toBeDefined();
  expect(hit!.fix.length).toBeGreaterThan(10);
  expect(hit!.evidence.length).toBeGreaterThan(5);
  return hit!;
}

async function expectHealthy(name: string, ms = 40_000): Promise<Run> {
  const r = await doctorUntil(name, (x) => x.code === 0, ms);
  expect(r.code, describeRun(r)).toBe(0);
  return r;
}

describe.skipIf(!canRunHost)("weave doctor on a 3-node lab", () => {
  const name = uniqueName("d");
  let s: LabState;
  let n2: LabState["nodes"][number];
  const nft = (script: string) => inNs(n2.netns, ["nft", "-f", "-"], { stdin: script });
  const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);
  /** nftables on n2 drops these UDP ports (an nft port or set: "6784", "{ 6783, 6784 }") on input. */
  const dropUdpOnN2 = (ports: string) =>
    ok(
      nft(
        `table inet doctortest {\n chain input { type filter hook input priority 0; policy accept; udp dport ${ports} drop; }\n}\n`,
      ),
    );
  const undropOnN2 = () => ok(nft("delete table inet doctortest\n"));

  beforeAll(async () => {
    s = await labUp(name, 3, 2, tools);
    n2 = s.nodes[1]!;
  }, 120_000);
  afterAll(async () => {
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("a healthy lab: every check passes, in a few seconds, and the table ends with the summary", async () => {
    const r = await expectHealthy(name);
    const names = new Set(r.checks.map((c) => c.name));
    for (const c of [
      "agent",
      "mesh-peers",
      "ipam-ready",
      "pod-address",
      "pod-route",
      "devices",
      "mtu",
      "ping-same-node",
      "ping-cross-node",
      "ping-full-size",
      "tcp-6783",
      "udp-6784",
      "range-overlap",
      "cni-config",
      "agent-logs",
    ])
      expect(names).toContain(c);
    expect(r.ms).toBeLessThan(8000);
    const text = await doctor(name, false);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/✅ \d+ checks passed/);
    expect(text.stderr).toContain("probing");
  }, 60_000);

  test("an agent stopped: the agent check names the node and says how to start it", async () => {
    await labAgent(name, "stop", n2.name, tools);
    try {
      const hit = await expectFault(name, "agent", n2.name);
      expect(hit.fix).toContain(`weave lab agent start ${n2.name}`);
    } finally {
      await labAgent(name, "start", n2.name, tools);
    }
    await expectHealthy(name);
  }, 90_000);

  test("UDP 6784 dropped by nftables on one node: udp-6784 names the node and the rule", async () => {
    dropUdpOnN2("6784");
    try {
      const hit = await expectFault(name, "udp-6784", n2.name);
      expect(hit.evidence).toContain("udp dport 6784 drop");
      expect(hit.fix).toContain("nft");
      // The agents move n2's pairs to the sleeve (UDP 6783), each end a moment apart: once
      // both ends of both pairs have (no "n1 reports fastdp" left), pods reach each other,
      // and datapath warns, naming n2 and the port to open.
      const onSleeve = (x: Run) =>
        x.checks.some(
          (c) =>
            c.name === "datapath" &&
            c.status === "warn" &&
            c.evidence.includes("2 pairs on the sleeve") &&
            !c.evidence.includes("reports fastdp"),
        );
      const r = await doctorUntil(name, onSleeve);
      const warned = r.checks.find((c) => c.name === "datapath" && c.status === "warn");
      expect(warned, describeRun(r)).toBeDefined();
      expect(warned!.evidence).toContain(n2.name);
      expect(warned!.fix).toContain("UDP 6784");
      expect(
        failures(r).filter((c) => c.name.startsWith("ping-")),
        describeRun(r),
      ).toEqual([]);
    } finally {
      undropOnN2();
    }
    await expectHealthy(name);
  }, 90_000);

  test("UDP 6783 and 6784 dropped on one node: the sleeve cannot help either, and the cross-node pings name it", async () => {
    dropUdpOnN2("{ 6783, 6784 }");
    try {
      await expectFault(name, "ping-cross-node", n2.name);
    } finally {
      undropOnN2();
    }
    await expectHealthy(name);
  }, 90_000);

  test("a wrong MTU on one node: mtu and the full-size ping name it", async () => {
    ok(inNs(n2.netns, ["ip", "link", "set", "eth0", "mtu", "1400"]));
    try {
      const hit = await expectFault(name, "mtu", n2.name);
      expect(hit.evidence).toContain("1400");
      expect(hit.fix).toContain("WEAVE_MTU");
      await expectFault(name, "ping-full-size", n2.name);
    } finally {
      ok(inNs(n2.netns, ["ip", "link", "set", "eth0", "mtu", "1500"]));
    }
    await expectHealthy(name);
  }, 90_000);

  test("a route overlapping the pod range: range-overlap names the node and the route", async () => {
    ok(inNs(n2.netns, ["ip", "route", "add", "10.32.0.0/16", "dev", "eth0"]));
    try {
      const hit = await expectFault(name, "range-overlap", n2.name);
      expect(hit.evidence).toContain("10.32.0.0/16");
      expect(hit.fix).toContain("ip route del 10.32.0.0/16");
    } finally {
      ok(inNs(n2.netns, ["ip", "route", "del", "10.32.0.0/16", "dev", "eth0"]));
    }
    await expectHealthy(name);
  }, 90_000);

  test("a second CNI conflist: cni-config names the node and the other file", async () => {
    const dir = n2.cniConfDir!;
    expect(dir).toBeDefined();
    const other = join(dir, "05-othernet.conflist");
    writeFileSync(
      other,
      JSON.stringify({ cniVersion: "1.0.0", name: "othernet", plugins: [{ type: "bridge", bridge: "cni0" }] }),
    );
    try {
      const hit = await expectFault(name, "cni-config", n2.name);
      expect(hit.evidence).toContain("05-othernet.conflist");
      expect(hit.fix).toContain("remove");
    } finally {
      rmSync(other, { force: true });
    }
    await expectHealthy(name);
  }, 90_000);

  test("a pod's default route removed: pod-route names the pod's node, the pod and the gateway", async () => {
    const pod = s.pods.find((p) => p.node === n2.name)!;
    const gw = /default via (\S+)/.exec(inNs(pod.name, ["ip", "-4", "route", "show", "default"]).stdout)?.[1];
    expect(gw).toBeDefined();
    ok(inNs(pod.name, ["ip", "route", "del", "default"]));
    try {
      const hit = await expectFault(name, "pod-route", n2.name);
      expect(hit.evidence).toContain(pod.name);
      expect(hit.fix).toContain(`default via ${gw}`);
    } finally {
      ok(inNs(pod.name, ["ip", "route", "add", "default", "via", gw!, "dev", "eth0"]));
    }
    await expectHealthy(name);
  }, 90_000);

  test("no such lab: exit 2", async () => {
    const r = await doctor("nosuchlb");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no lab named "nosuchlb"');
  });
});
