/**
 * The agent's and weave npc's /metrics: Weave Net's names, labels and types where it had
 * them, ours beside them, in the text format and in OpenMetrics (chosen by Accept), from
 * agents meshed over an in-memory network with a virtual clock. Where promtool (Debian's
 * prometheus) is installed, it checks every exposition too.
 */
import { describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { Agent } from "../../net/agent/agent.ts";
import { parseCidr } from "../../net/cidr.ts";
import { UNFIT_UNDER_BUN, registerProcessMetrics } from "../../net/host/process-metrics.ts";
import { registerAgentMetrics } from "../../net/metrics/agent-metrics.ts";
import { Exposition, negotiate } from "../../net/metrics/exposition.ts";
import { registerNpcMetrics } from "../../net/metrics/npc-metrics.ts";
import { NpcController } from "../../net/npc/controller.ts";
import { FakeWorld, memoryStore } from "../support/fake-host.ts";
import { MemNet, VirtualClock } from "../support/mem-net.ts";
import { promtoolProblems } from "../support/promtool.ts";

const PROMTOOL = Bun.which("promtool");

/** Families of an exposition: name -> TYPE, and every sample line. */
function parse(text: string) {
  const types = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    const s = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!s || line.startsWith("#")) continue;
    const labels: Record<string, string> = {};
    for (const m of (s[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
    samples.push({ name: s[1]!, labels, value: Number(s[3]) });
  }
  return {
    types,
    samples,
    value: (name: string, labels: Record<string, string> = {}) => {
      const hit = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
      return hit?.value;
    },
  };
}

async function promtoolCheck(text: string): Promise<void> {
  expect(await promtoolProblems(text, PROMTOOL!)).toEqual([]);
}

function meshOfThree() {
  const clock = new VirtualClock();
  const net = new MemNet(clock);
  const ip = (i: number) => `198.18.0.${10 + i}`;
  const agents = [1, 2, 3].map((i) => {
    const world = new FakeWorld();
    world
      .ns("root")
      .links.set("eth0", { index: 99, name: "eth0", mtu: 1500, mac: "02:aa:00:00:00:01", up: true, group: 0 });
    const a = new Agent(
      {
        range: parseCidr("10.40.0.0/24"),
        bridge: "weave",
        nickname: `n${i}`,
        dataDir: `/d${i}`,
        peers: [1, 2, 3].filter((j) => j !== i).map(ip),
        advertise: ip(i),
        meshListen: `${ip(i)}:6783`,
      },
      {
        host: world.host(),
        openHost: (ns) => world.host(ns),
        checkNetns: () => ({ ok: true }),
        store: memoryStore(),
        log: () => {},
        defer: () => {},
        transport: net.transport(`${ip(i)}:6783`),
        sched: clock,
        machineId: `m${i}`,
      },
    );
    a.start();
    return a;
  });
  return { clock, agents };
}

describe("negotiating the format", () => {
  test("Prometheus 2.x's Accept header gets OpenMetrics; curl, a browser and old scrapers get text", () => {
    const prometheus =
      "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    expect(negotiate(prometheus)).toBe("openmetrics");
    expect(negotiate("application/openmetrics-text; version=1.0.0")).toBe("openmetrics");
    expect(negotiate(undefined)).toBe("text");
    expect(negotiate("*/*")).toBe("text");
    expect(negotiate("text/plain;version=0.0.4")).toBe("text");
    expect(negotiate("text/plain;q=1,application/openmetrics-text;q=0.5")).toBe("text");
    expect(negotiate("application/openmetrics-text;q=0")).toBe("text");
  });

  test("GET /metrics answers in the asked format; other paths 404, other methods 405", async () => {
    const exp = new Exposition();
    registerProcessMetrics(exp.registries);
    const om = await exp.handle(
      new Request("http://x/metrics", { headers: { accept: "application/openmetrics-text;version=1.0.0" } }),
    );
    expect(om.headers.get("content-type")).toStartWith("application/openmetrics-text; version=1.0.0");
    expect(await om.text()).toEndWith("# EOF\n");
    const text = await exp.handle(new Request("http://x/metrics"));
    expect(text.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    expect((await exp.handle(new Request("http://x/other"))).status).toBe(404);
    expect((await exp.handle(new Request("http://x/metrics", { method: "POST" }))).status).toBe(405);
  });

  test("process memory and CPU under Bun, without the default metrics Bun cannot fill in", async () => {
    const exp = new Exposition();
    registerProcessMetrics(exp.registries);
    const m = parse((await exp.render("text")).body);
    expect(m.types.get("process_cpu_seconds_total")).toBe("counter");
    expect(m.value("process_resident_memory_bytes")).toBeGreaterThan(1_000_000);
    expect(m.value("process_open_fds")).toBeGreaterThan(0);
    expect(m.types.get("nodejs_heap_size_used_bytes")).toBe("gauge");
    for (const name of UNFIT_UNDER_BUN) expect(m.types.has(name)).toBe(false);
  });
});

describe("the agent's metrics", () => {
  test("Weave Net's names, labels and types, and ours, with the mesh's values", async () => {
    const { clock, agents } = meshOfThree();
    await clock.run(5000);
    const a = agents[0]!;
    const exp = new Exposition();
    exp.define((r) => registerAgentMetrics(r, a));
    a.allocator.allocate("pod1", "eth0");
    a.allocator.allocate("pod2", "eth0");
    a.stats.cni({ command: "ADD", code: undefined, seconds: 0.004 });
    a.stats.cni({ command: "ADD", code: 11, seconds: 0.02 });
    a.stats.cni({ command: "DEL", code: undefined, seconds: 0.001 });
    await clock.run(3000);
    const text = (await exp.render("text")).body;
    const m = parse(text);
    const types = {
      weave_connections: "gauge",
      weave_connection_terminations_total: "counter",
      weave_ips: "gauge",
      weave_max_ips: "gauge",
      weave_ipam_unreachable_count: "gauge",
      weave_ipam_pending_allocates: "gauge",
      weave_ipam_pending_claims: "gauge",
      weave_ipam_free_ips: "gauge",
      weave_ipam_waiting: "gauge",
      weave_ready: "gauge",
      weave_peers: "gauge",
      weave_gossip_sent_bytes_total: "counter",
      weave_gossip_received_bytes_total: "counter",
      weave_datapath_entries: "gauge",
      weave_datapath_changes_total: "counter",
      weave_reconcile_errors_total: "counter",
      weave_build_info: "gauge",
      weave_cni_operations_total: "counter",
      weave_cni_errors_total: "counter",
      weave_cni_operation_duration_seconds: "histogram",
    };
    for (const [name, type] of Object.entries(types)) expect([name, m.types.get(name)]).toEqual([name, type]);

    expect(m.value("weave_connections", { state: "established", type: "fastdp", encryption: "" })).toBe(2);
    for (const state of ["pending", "retrying", "failed"])
      expect(m.value("weave_connections", { state, type: "unknown" })).toBe(0);
    const conn = m.samples.find((s) => s.name === "weave_connections")!;
    expect(Object.keys(conn.labels).sort()).toEqual(["encryption", "state", "type"]);
    // two pods and the bridge's own address
    expect(m.value("weave_ips", { state: "local-used" })).toBe(3);
    expect(m.value("weave_max_ips")).toBe(a.allocator.capacity);
    expect(a.allocator.capacity).toBe(254);
    expect(m.value("weave_ipam_unreachable_count")).toBe(0);
    expect(m.value("weave_ipam_pending_allocates")).toBe(0);
    expect(m.value("weave_peers", { state: "reachable" })).toBe(2);
    expect(m.value("weave_peers", { state: "unreachable" })).toBe(0);
    expect(m.value("weave_ready")).toBe(1);
    expect(m.value("weave_ipam_waiting")).toBe(0);
    expect(m.value("weave_gossip_sent_bytes_total")).toBeGreaterThan(0);
    expect(m.value("weave_gossip_received_bytes_total")).toBeGreaterThan(0);
    // flood entries to 2 peers (who hold only their bridges, outside "pods")
    expect(m.value("weave_datapath_entries", { table: "fdb" })).toBeGreaterThanOrEqual(2);
    expect(m.value("weave_build_info")).toBe(1);
    expect(m.value("weave_cni_operations_total", { command: "ADD", result: "ok" })).toBe(1);
    expect(m.value("weave_cni_operations_total", { command: "ADD", result: "error" })).toBe(1);
    expect(m.value("weave_cni_operations_total", { command: "CHECK", result: "ok" })).toBe(0);
    expect(m.value("weave_cni_errors_total", { command: "ADD", code: "11" })).toBe(1);
    expect(m.value("weave_cni_operation_duration_seconds_count", { command: "ADD" })).toBe(2);
    expect(m.value("weave_cni_operation_duration_seconds_bucket", { command: "ADD", le: "0.005" })).toBe(1);
    expect(m.value("weave_cni_operation_duration_seconds_bucket", { command: "ADD", le: "0.025" })).toBe(2);

    // a peer stops: its connections end, it becomes unreachable, still owning space
    agents[2]!.stop();
    await clock.run(20000);
    const after = parse((await exp.render("text")).body);
    expect(after.value("weave_connection_terminations_total")).toBeGreaterThanOrEqual(1);
    expect(after.value("weave_connections", { state: "established" })).toBe(1);
    expect(after.value("weave_peers", { state: "unreachable" })).toBe(1);
    expect(after.value("weave_ipam_unreachable_count")).toBe(1);

    // OpenMetrics: the same families, counters' samples with _total, an # EOF
    const om = (await exp.render("openmetrics")).body;
    expect(om).toContain("# TYPE weave_connection_terminations counter");
    expect(om).toMatch(/^weave_connection_terminations_total \d+$/m);
    expect(om).toEndWith("# EOF\n");
    // an OpenMetrics scrape leaves the text format's counter names alone (prom-client renames in place)
    const again = (await exp.render("text")).body;
    expect(again).toContain("# TYPE weave_connection_terminations_total counter");
    if (PROMTOOL) await promtoolCheck(again);
    if (PROMTOOL) await promtoolCheck(text);
    for (const x of agents) x.stop();
  });
});

describe("weave npc's metrics", () => {
  test("weavenpc_blocked_connections_total keeps its name and labels; syncs, duration, policies and rules", async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: "https://127.0.0.1:1", skipTLSVerify: true }],
      users: [{ name: "u" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const c = new NpcController({
      node: "n1",
      kubeConfig: kc,
      kernel: { read: () => undefined, apply: () => {} },
      log: () => {},
    });
    const exp = new Exposition();
    registerProcessMetrics(exp.registries);
    exp.define((r) => registerNpcMetrics(r, c, { lost: 2 }));
    c.reporter.blocked.set("TCP 80", 3);
    c.reporter.blocked.set("UDP 53", 1);
    c.syncs = 7;
    c.errors = 1;
    c.enforced = { policies: 2, localPods: 3, chains: 9, rules: 14 };
    const text = (await exp.render("text")).body;
    const m = parse(text);
    expect(m.types.get("weavenpc_blocked_connections_total")).toBe("counter");
    expect(m.value("weavenpc_blocked_connections_total", { protocol: "TCP", dport: "80" })).toBe(3);
    expect(m.value("weavenpc_blocked_connections_total", { protocol: "UDP", dport: "53" })).toBe(1);
    expect(m.value("weavenpc_syncs_total")).toBe(7);
    expect(m.value("weavenpc_policy_enforcement_errors_total")).toBe(1);
    expect(m.value("weavenpc_drop_log_lost_total")).toBe(2);
    expect(m.types.get("weavenpc_sync_duration_seconds")).toBe("histogram");
    expect(m.value("weavenpc_policies")).toBe(2);
    expect(m.value("weavenpc_rules")).toBe(14);
    expect(m.value("weavenpc_chains")).toBe(9);
    expect(m.value("weavenpc_local_pods")).toBe(3);
    expect(m.value("weavenpc_synced")).toBe(0);
    expect(m.value("process_resident_memory_bytes")).toBeGreaterThan(0);
    if (PROMTOOL) await promtoolCheck(text);
  });
});
