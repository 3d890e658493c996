/**
 * Metrics and Events on a real lab (3 nodes), read by a real Prometheus (Debian's).
 *
 * Prometheus runs inside the lab's underlay namespace `<lab>-u` (which holds 198.18.0.1
 * on the nodes' underlay), so it reaches each agent's /metrics on its node's address
 * (:6782, where the lab binds it) and each weave npc's (:6781); it listens on that
 * namespace's own 127.0.0.1, where the test queries its HTTP API (from inside the
 * namespace too). Its config is the README's scrape job (docs/prometheus/weave-scrape.yaml)
 * verbatim, relabelling and all, except that Debian's Prometheus is built without
 * Kubernetes discovery: the targets it would discover are given as static targets with
 * the same __meta_kubernetes_* labels, made from the weave-net pods the lab's API serves
 * (their named ports and prometheus.io annotations), and the README's alert rules
 * (docs/prometheus/weave-alerts.yaml) are loaded. Its own data dir is under a temp dir;
 * it is started and killed by pid, and the dir removed, whatever happens.
 *
 * Then: `up` is 1 for the 6 targets (3 agents, 3 controllers) and the mesh/vxlan ports
 * were relabelled away; after 3 pod adds on n1, weave_ips, the CNI counter and histogram
 * say so; promtool accepts every exposition. Cutting n3 (TCP 6783 and UDP 6784 dropped)
 * raises its connection terminations and unreachable peers, and puts on its Node one
 * WeavePeerConnectionFailing Event per peer, whose count grows, not one Event per retry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { parse as parseYaml, stringify } from "yaml";
import { httpGetInNetns } from "../../net/host/netns-http.ts";
import { inNetns, netnsPath } from "../../net/host/netns.ts";
import { createPods, labCut, labDown, labUp } from "../../net/lab/lab.ts";
import { LabApi } from "../../net/lab/api-client.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { type LabState, readLab } from "../../net/lab/state.ts";
import { canRunHost, ROOT, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { promtoolProblems } from "../support/promtool.ts";
import { eventually } from "../support/wait.ts";

const PROMETHEUS = Bun.which("prometheus");
const PROMTOOL = Bun.which("promtool");
const SCRAPE = join(ROOT, "docs/prometheus/weave-scrape.yaml");
const RULES = join(ROOT, "docs/prometheus/weave-alerts.yaml");

type Sample = { metric: Record<string, string>; value: [number, string] };
// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects as the lab's API serves them
type Doc = any;

/** A port nothing listens on in `netns`: bound once there with port 0, then closed. */
function freePort(netns: string): number {
  const l = inNetns(netnsPath(netns), () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  const port = l.port;
  l.stop(true);
  return port;
}

/** Label names as Kubernetes discovery makes them from annotation keys. */
const sanitize = (k: string) => k.replace(/[^a-zA-Z0-9_]/g, "_");

/** The targets `kubernetes_sd_configs: role: pod` would give for these pods: one per container port. */
function discoveredTargets(pods: Doc[]) {
  return pods.flatMap((pod) =>
    (pod.spec.containers as Doc[]).flatMap((c) =>
      ((c.ports ?? []) as Doc[]).map((p) => {
        const labels: Record<string, string> = {
          __meta_kubernetes_namespace: pod.metadata.namespace,
          __meta_kubernetes_pod_name: pod.metadata.name,
          __meta_kubernetes_pod_node_name: pod.spec.nodeName,
          __meta_kubernetes_pod_ip: pod.status.podIP,
          __meta_kubernetes_pod_container_name: c.name,
          __meta_kubernetes_pod_container_port_name: p.name ?? "",
          __meta_kubernetes_pod_container_port_number: String(p.containerPort),
          __meta_kubernetes_pod_container_port_protocol: p.protocol ?? "TCP",
        };
        for (const [k, v] of Object.entries(pod.metadata.annotations ?? {}))
          labels[`__meta_kubernetes_pod_annotation_${sanitize(k)}`] = String(v);
        return { targets: [`${pod.status.podIP}:${p.containerPort}`], labels };
      }),
    ),
  );
}

describe.skipIf(!canRunHost || !PROMETHEUS || !PROMTOOL)("metrics and events on a lab, scraped by Prometheus", () => {
  const name = uniqueName("m");
  const dir = mkdtempSync(join(tmpdir(), `weave-prom-${name}-`));
  let lab: LabState;
  let api: LabApi;
  let prometheus: Subprocess | undefined;
  let port = 0;
  const underlay = `${name}-u`;
  const node = (i: number) => `${name}-n${i}`;

  /** GET on Prometheus' API, from inside the underlay namespace. */
  const promGet = async (path: string): Promise<Doc> => {
    const r = await httpGetInNetns(netnsPath(underlay), port, path, 5000);
    if ("error" in r) throw new Error(`GET ${path}: ${r.error}`);
    if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  };
  const query = async (q: string): Promise<Sample[]> =>
    (await promGet(`/api/v1/query?query=${encodeURIComponent(q)}`)).data.result;
  /** The value of `q` for node `n`'s agent (one series), or undefined. */
  const valueOn = async (q: string, n: string) => {
    const hit = (await query(q)).find((s) => s.metric.node === n);
    return hit ? Number(hit.value[1]) : undefined;
  };
  /** Waits for `q` on node `n` to be `want` (Prometheus scrapes every second). */
  const expectOn = async (q: string, n: string, want: number, ms = 20000) => {
    await eventually(async () => (await valueOn(q, n)) === want, ms);
    expect([q, n, await valueOn(q, n)]).toEqual([q, n, want]);
  };

  beforeAll(async () => {
    lab = await labUp(name, 3, 0, tools);
    api = new LabApi(lab.controlPlane!.url);
    const pods = (await api.get("/api/v1/namespaces/kube-system/pods"))!.items as Doc[];
    expect(pods.filter((p) => p.metadata.name.startsWith("weave-net-"))).toHaveLength(3);

    // The README's scrape job, with static targets standing in for Kubernetes discovery.
    const job = (parseYaml(readFileSync(SCRAPE, "utf8")) as Doc).scrape_configs[0];
    delete job.kubernetes_sd_configs;
    job.static_configs = discoveredTargets(pods.filter((p) => p.metadata.name.startsWith("weave-net-")));
    const config = {
      global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
      rule_files: [RULES],
      scrape_configs: [job],
    };
    writeFileSync(join(dir, "prometheus.yml"), stringify(config));
    const check = Bun.spawnSync([PROMTOOL!, "check", "config", join(dir, "prometheus.yml")], { stderr: "pipe" });
    expect(check.stderr.toString() + check.stdout.toString()).toContain("SUCCESS");

    port = freePort(underlay);
    prometheus = Bun.spawn(
      [
        "nsenter",
        `--net=${netnsPath(underlay)}`,
        PROMETHEUS!,
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        "--storage.tsdb.retention.time=1h",
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdout: Bun.file(join(dir, "prometheus.log")), stderr: Bun.file(join(dir, "prometheus.log")) },
    );
    const ready = await eventually(async () => {
      const r = await httpGetInNetns(netnsPath(underlay), port, "/-/ready", 1000);
      return "status" in r && r.status === 200;
    }, 30000);
    if (!ready) throw new Error(`Prometheus did not get ready:\n${readFileSync(join(dir, "prometheus.log"), "utf8")}`);
  }, 120000);

  afterAll(async () => {
    if (prometheus) {
      prometheus.kill();
      await Promise.race([prometheus.exited, Bun.sleep(5000)]);
      if (prometheus.exitCode === null) prometheus.kill(9);
      await prometheus.exited;
    }
    rmSync(dir, { recursive: true, force: true });
    if (readLab(name)) await labDown(name, tools);
  }, 60000);

  test("up is 1 for every agent and weave npc, and only their metrics ports are targets", async () => {
    await eventually(
      async () => (await query('up{job="weave"}')).length === 6 && (await query("up == 1")).length === 6,
    );
    const up = await query('up{job="weave"}');
    const seen = up.map((s) => `${s.metric.node} ${s.metric.container} ${s.metric.instance} ${s.value[1]}`).sort();
    const want = [1, 2, 3].flatMap((i) => [
      `${node(i)} weave 198.18.0.${10 + i}:6782 1`,
      `${node(i)} weave-npc 198.18.0.${10 + i}:6781 1`,
    ]);
    expect(seen).toEqual(want.sort());
    // the mesh and vxlan ports were discovered too, and relabelled away
    const targets = (await promGet("/api/v1/targets")).data;
    expect(targets.activeTargets).toHaveLength(6);
    expect(targets.droppedTargets.length).toBeGreaterThanOrEqual(6);
    // the README's alert rules loaded, all of them healthy
    const groups = (await promGet("/api/v1/rules")).data.groups as Doc[];
    const rules = groups.flatMap((g) => g.rules as Doc[]);
    expect(rules.length).toBe(8);
    for (const r of rules) expect([r.name, r.health]).toEqual([r.name, "ok"]);
  });

  test("the series a dashboard needs, for every node, and counters that move with 3 pod adds", async () => {
    for (let i = 1; i <= 3; i++) {
      await expectOn('weave_connections{state="established",type="fastdp"}', node(i), 2);
      await expectOn('weave_peers{state="reachable"}', node(i), 2);
      // the bridge's own address, no pod yet
      await expectOn('weave_ips{state="local-used"}', node(i), 1);
      await expectOn("weave_max_ips", node(i), 2 ** 20 - 2);
      await expectOn("weave_ipam_unreachable_count", node(i), 0);
      await expectOn('weave_cni_operations_total{command="ADD",result="ok"}', node(i), 0);
      await expectOn("weave_ready", node(i), 1);
      await expectOn("weavenpc_synced", node(i), 1);
    }
    // the neighbour entries of n2's bridge: the other nodes' bridges, no pod yet
    await expectOn('weave_datapath_entries{table="neighbour"}', node(2), 2);
    await createPods(
      lab,
      [1, 2, 3].map((j) => ({ name: `${node(1)}-m${j}`, namespace: "default", node: node(1), labels: {}, ports: [] })),
    );
    await expectOn('weave_ips{state="local-used"}', node(1), 4);
    await expectOn('weave_cni_operations_total{command="ADD",result="ok"}', node(1), 3);
    await expectOn('weave_cni_operation_duration_seconds_count{command="ADD"}', node(1), 3);
    await expectOn('weave_cni_operation_duration_seconds_bucket{command="ADD",le="+Inf"}', node(1), 3);
    await expectOn('weave_cni_operations_total{command="ADD",result="ok"}', node(2), 0);
    // the other nodes program n1's new pods into their datapath
    await expectOn('weave_datapath_entries{table="neighbour"}', node(2), 2 + 3);
    // the node's pods as weave npc counts them: the weave-net pod (host network) and the 3
    await expectOn("weavenpc_local_pods", node(1), 1 + 3);
    const gossip = await valueOn("weave_gossip_sent_bytes_total", node(1));
    expect(gossip).toBeGreaterThan(0);
    const rss = await valueOn('process_resident_memory_bytes{container="weave"}', node(1));
    expect(rss).toBeGreaterThan(1_000_000);
  }, 120000);

  test("promtool accepts every exposition, in the text format and as Prometheus reads OpenMetrics", async () => {
    for (let i = 1; i <= 3; i++)
      for (const p of [6782, 6781]) {
        const url = `http://198.18.0.${10 + i}:${p}/metrics`;
        const text = inNs(underlay, ["curl", "-sf", url]);
        expect(text.code).toBe(0);
        expect(await promtoolProblems(text.stdout)).toEqual([]);
        const om = inNs(underlay, ["curl", "-sf", "-H", "Accept: application/openmetrics-text;version=1.0.0", url]);
        expect(om.stdout).toEndWith("# EOF\n");
      }
  });

  test("a cut node: its connections end, peers go unreachable, and one Event per peer counts the failures", async () => {
    const n3 = node(3);
    labCut(name, "n3", true);
    await expectOn('weave_peers{state="unreachable"}', n3, 2, 30000);
    expect(await valueOn("weave_connection_terminations_total", n3)).toBeGreaterThanOrEqual(2);
    const failing = async () => {
      const events = (await api.get(`/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${n3}`))!
        .items as Doc[];
      return events.filter((e) => e.reason === "WeavePeerConnectionFailing");
    };
    await eventually(async () => (await failing()).some((e) => e.count > 1), 90000);
    const events = await failing();
    // one Event per peer (the series' key), its count raised by PATCH: never one per retry
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events.length).toBeLessThanOrEqual(2);
    expect(new Set(events.map((e) => e.message.match(/peer (\S+)/)?.[1])).size).toBe(events.length);
    const e = events.find((x) => x.count > 1)!;
    expect(e).toMatchObject({
      type: "Warning",
      involvedObject: { kind: "Node", name: n3 },
      source: { component: "weave-agent" },
    });
    expect(Date.parse(e.lastTimestamp)).toBeGreaterThan(Date.parse(e.firstTimestamp));
    // the cut shows in the metrics too
    await expectOn('weave_connections{state="established"}', n3, 0);
    labCut(name, "n3", false);
  }, 120000);
});
