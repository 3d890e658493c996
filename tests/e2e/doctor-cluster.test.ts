/**
 * Cluster mode's in-pod probes (net/doctor/gather/probe-pods.ts) end to end: the API-server
 * stand-in with a fake kubelet and a pods/exec endpoint (tests/support/k8s-exec.ts)
 * backed by a real 3-node lab, so each probe pod gets a real namespace and a real
 * address from the real CNI plugin, and the pings doctor asks for through the exec API
 * cross the real weave network.
 *
 * The Service and DNS probes cannot work in a lab (no kube-proxy, no CoreDNS): the
 * stand-in answers them with a clear failure, and the test checks that doctor reports
 * them as failed per node with that evidence (it does not pretend they pass).
 * Then UDP 6784 is dropped on node 3 (an nft table of this test, removed after): the
 * ping probes involving node 3 fail and name it, the others pass.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { canRunHost, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";
import { startLabKubelet, type LabKubelet } from "../support/k8s-exec.ts";
import { labDown, labUp } from "../../net/lab/lab.ts";
import { readLab, type LabState } from "../../net/lab/state.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { checkProbes, PROBE_APP, PROBE_LABEL, type ProbeFacts } from "../../net/doctor/checks-probes.ts";
import { runProbes } from "../../net/doctor/gather/probe-pods.ts";
import { doctorCluster } from "../../net/doctor/gather/cluster.ts";

const TABLE = "weavetestprobecut";

describe.skipIf(!canRunHost)("doctor's in-pod probes on the stand-in backed by a 3-node lab", () => {
  let lab: LabState;
  let kubelet: LabKubelet;
  let api: ApiServer;
  const name = uniqueName("p");
  const nodes = () => lab.nodes.map((n) => n.name);

  beforeAll(async () => {
    lab = await labUp(name, 3, 0, tools);
    kubelet = startLabKubelet(lab);
    api = await startApiServer({ websocket: kubelet.websocket });
    kubelet.attach(api.store);
    for (const n of kubelet.nodes()) api.store.put(n);
    api.store.put({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kubernetes", namespace: "default" },
      spec: { clusterIP: "10.96.0.1", ports: [{ port: 443 }] },
    });
  }, 90_000);

  afterAll(async () => {
    if (lab) inNs(lab.nodes[2]!.netns, ["nft", "delete", "table", "inet", TABLE]);
    kubelet?.stop();
    await api?.stop();
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  const probe = () =>
    runProbes(
      api.kubeConfig,
      api.store.list("v1", "Node") as never,
      api.store.get("v1", "Service", "kubernetes", "default") as never,
      { timeoutMs: 20_000, execTimeoutMs: 10_000 },
    );
  const leftovers = () =>
    api.store.list("v1", "Pod").filter((p) => p.metadata.labels?.[PROBE_LABEL] === PROBE_APP).length;

  test("probe pods get real addresses on every node, pings pass, and everything is removed", async () => {
    const f: ProbeFacts = await probe();
    expect(f.error).toBeUndefined();
    expect(f.pods.map((p) => p.node).sort()).toEqual(nodes().sort());
    for (const p of f.pods) expect(p.ip, JSON.stringify(p)).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+$/);
    const pings = f.probes.filter((p) => p.kind === "ping");
    expect(pings.length).toBe(6);
    expect(
      pings.filter((p) => !p.ok),
      JSON.stringify(pings, null, 1),
    ).toEqual([]);
    expect(pings[0]!.output).toContain("1 packets transmitted");
    const checks = checkProbes(f);
    expect(checks.find((c) => c.name === "probe-ping")).toMatchObject({ status: "pass" });
    expect(checks.find((c) => c.name === "probe-pods")).toMatchObject({ status: "pass" });
    // Service and DNS: the lab has neither; the stand-in says so and doctor fails them per node.
    for (const kind of ["probe-service", "probe-dns"]) {
      const got = checks.filter((c) => c.name === kind);
      expect(got.map((c) => c.status)).toEqual(["fail", "fail", "fail"]);
      expect(got[0]!.evidence).toContain("which the lab does not have");
    }
    expect(kubelet.execs.some((e) => e.includes("nc -z -w2 10.96.0.1 443"))).toBe(true);
    expect(kubelet.execs.some((e) => e.endsWith("nslookup kubernetes.default"))).toBe(true);
    // Deleted by name, CNI DEL run and namespaces gone.
    expect(leftovers()).toBe(0);
    await Bun.sleep(100);
    expect(kubelet.backed().size).toBe(0);
    const netns = Bun.spawnSync(["ip", "netns", "list"]).stdout.toString();
    expect(netns).not.toContain(`${name}-k`);
  }, 90_000);

  test("UDP 6784 dropped on one node: the pings involving it fail and name it", async () => {
    const n3 = lab.nodes[2]!;
    const script =
      `table inet ${TABLE} {\n` +
      ["input", "output"]
        .map(
          (h) =>
            `  chain ${h} { type filter hook ${h} priority -10; policy accept; udp dport 6784 drop; udp sport 6784 drop; }\n`,
        )
        .join("") +
      "}\n";
    const r = inNs(n3.netns, ["nft", "-f", "-"], { stdin: script });
    expect(r.code, r.stderr).toBe(0);
    try {
      const f = await probe();
      const pings = f.probes.filter((p) => p.kind === "ping");
      expect(pings.length).toBe(6);
      for (const p of pings) expect(p.ok, JSON.stringify(p)).toBe(p.from !== n3.name && p.to !== n3.name);
      const failed = checkProbes(f).filter((c) => c.name === "probe-ping" && c.status === "fail");
      expect(failed.length).toBe(1);
      expect(failed[0]!.node).toBe(n3.name);
      expect(failed[0]!.evidence).toContain(`every pair involving ${n3.name}`);
      expect(failed[0]!.fix).toContain("UDP 6784");
      expect(leftovers()).toBe(0);
    } finally {
      inNs(n3.netns, ["nft", "delete", "table", "inet", TABLE]);
    }
  }, 90_000);

  test("through doctorCluster: the probe checks replace the in-pod-probes warning", async () => {
    const r = await doctorCluster(api.kubeConfig, {
      progress: () => {},
      probes: { timeoutMs: 20_000, execTimeoutMs: 10_000 },
    });
    const names = new Set(r.checks.map((c) => c.name));
    expect(names.has("in-pod-probes")).toBe(false);
    expect(names.has("probe-ping")).toBe(true);
    expect(r.checks.filter((c) => c.name === "probe-ping").every((c) => c.status === "pass")).toBe(true);
    expect(leftovers()).toBe(0);
  }, 90_000);
});

describe("probe pods that never run (no kubelet)", () => {
  test("a clear fail per node naming the pod's state, and the pods are removed", async () => {
    const api = await startApiServer();
    try {
      api.store.put({
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: "n1" },
        status: { conditions: [{ type: "Ready", status: "True" }] },
      });
      api.store.put({
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: "n2" },
        status: { conditions: [{ type: "Ready", status: "False" }] },
      });
      const f = await runProbes(api.kubeConfig, api.store.list("v1", "Node") as never, undefined, {
        timeoutMs: 1_000,
        namespace: "weave-doctor",
        createNamespace: true,
      });
      expect(f.pods.map((p) => p.node)).toEqual(["n1"]);
      const c = checkProbes(f).filter((x) => x.name === "probe-pods");
      expect(c).toHaveLength(1);
      expect(c[0]).toMatchObject({ status: "fail", node: "n1" });
      expect(c[0]!.evidence).toContain("not Running with an address after 1 s: Pending, no podIP");
      expect(f.probes).toEqual([]);
      expect(api.store.list("v1", "Pod")).toEqual([]);
      expect(api.store.get("v1", "Namespace", "weave-doctor")).toBeUndefined();
    } finally {
      await api.stop();
    }
  });
});
