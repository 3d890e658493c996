/**
 * `weave doctor` in cluster mode against the API-server stand-in
 * (net/lab/api-server.ts), through the command itself (exit codes, JSON). The
 * stand-in runs no kubelet or controllers and has no exec API: the test writes the
 * objects a healthy or broken cluster would have, and doctor's in-pod probes are
 * reported as not run.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { V1Pod } from "@kubernetes/client-node";
import { run } from "../../commands/doctor.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";

type Check = { name: string; status: string; node: string | null; evidence: string; fix: string };
const servers: ApiServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

const NODES = { n1: "198.18.0.1", n2: "198.18.0.2", n3: "198.18.0.3" };
const old = new Date(Date.now() - 10 * 60_000).toISOString();

/** The agent pods run weave npc beside the agent (2/2), as the DaemonSet has them. */
const NPC_RUNNING = { name: "weave-npc", ready: true, restartCount: 0, image: "", imageID: "", state: { running: {} } };

const agentPod = (node: string, ready = true): V1Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: `weave-net-${node}`, namespace: "kube-system", labels: { name: "weave-net" } },
  spec: {
    nodeName: node,
    hostNetwork: true,
    containers: [
      { name: "weave", image: "weave:0.1.0" },
      { name: "weave-npc", image: "weave:0.1.0" },
    ],
  },
  status: ready
    ? {
        phase: "Running",
        conditions: [{ type: "Ready", status: "True" }],
        containerStatuses: [
          { name: "weave", ready: true, restartCount: 0, image: "", imageID: "", state: { running: {} } },
          NPC_RUNNING,
        ],
      }
    : {
        phase: "Running",
        conditions: [{ type: "Ready", status: "False" }],
        containerStatuses: [
          {
            name: "weave",
            ready: false,
            restartCount: 3,
            image: "",
            imageID: "",
            state: { waiting: { reason: "CrashLoopBackOff" } },
            lastState: {
              terminated: { exitCode: 1, reason: "Error", message: "refusing to start: range 10.32.0.0/12 differs" },
            },
          },
          NPC_RUNNING,
        ],
      },
});

async function cluster(o: { ds?: boolean; podsReady?: boolean } = {}) {
  const api = await startApiServer();
  servers.push(api);
  const st = api.store;
  for (const [name, ip] of Object.entries(NODES)) {
    st.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name },
      status: {
        addresses: [{ type: "InternalIP", address: ip }],
        conditions: [
          { type: "Ready", status: "True", reason: "KubeletReady" },
          { type: "NetworkUnavailable", status: "False", reason: "WeaveIsUp" },
        ],
      },
    });
    st.put(agentPod(name));
    st.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `app-${name}`, namespace: "default" },
      spec: { nodeName: name, containers: [{ name: "app", image: "busybox" }] },
      status: { phase: "Running", podIP: `10.3${Number(name.at(-1)) + 1}.0.5` },
    });
  }
  st.put({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "kubernetes", namespace: "default" },
    spec: { clusterIP: "10.96.0.1", ports: [{ port: 443 }] },
  });
  st.put({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "weave-net", namespace: "kube-system" },
    data: { "ipalloc-range": "10.32.0.0/12" },
  });
  if (o.ds !== false) {
    st.put({
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "weave-net", namespace: "kube-system" },
      spec: {
        selector: { matchLabels: { name: "weave-net" } },
        template: {
          metadata: { labels: { name: "weave-net" } },
          spec: { containers: [{ name: "weave", image: "weave:0.1.0" }] },
        },
      },
    });
    const ds = st.get("apps/v1", "DaemonSet", "weave-net", "kube-system")!;
    st.put({
      ...ds,
      status: {
        observedGeneration: ds.metadata.generation,
        desiredNumberScheduled: 3,
        currentNumberScheduled: 3,
        updatedNumberScheduled: 3,
        numberMisscheduled: 0,
        numberReady: 3,
      },
    });
  }
  return api;
}

async function doctor(args: { kubeconfig?: string; context?: string }) {
  let out = "",
    err = "";
  // The probe pods need a kubelet; tests/e2e/doctor-cluster.test.ts runs them on a lab.
  const code = await run(
    { ...args, output: "json", probes: false },
    {
      out: (t) => {
        out += t;
      },
      err: (t) => {
        err += t;
      },
    },
  );
  const checks: Check[] = out ? (JSON.parse(out) as { checks: Check[] }).checks : [];
  return {
    code,
    checks,
    err,
    failed: checks.filter((c) => c.status === "fail").map((c) => `${c.name}@${c.node ?? "-"}`),
  };
}

describe("doctor against a cluster (API-server stand-in)", () => {
  test("healthy: every API check passes; the in-pod probes are said not to have run; exit 0", async () => {
    const api = await cluster();
    const r = await doctor({ kubeconfig: api.kubeconfigPath });
    expect(r.failed).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.checks.filter((c) => c.status === "warn").map((c) => c.name)).toEqual(["in-pod-probes"]);
    expect(r.checks.find((c) => c.name === "in-pod-probes")!.evidence).toContain("not run");
    expect(new Set(r.checks.map((c) => c.name))).toEqual(
      new Set([
        "daemonset",
        "agent-pods",
        "node-ready",
        "node-network",
        "npc",
        "pod-address",
        "range-overlap",
        "in-pod-probes",
      ]),
    );
    expect(r.checks.find((c) => c.name === "range-overlap")!.evidence).toContain(
      "10.96.0.0/12 (inferred from ClusterIP 10.96.0.1)",
    );
  });

  test("no DaemonSet: says to install", async () => {
    const api = await cluster({ ds: false });
    const r = await doctor({ kubeconfig: api.kubeconfigPath });
    expect(r.code).toBe(1);
    expect(r.failed).toEqual(["daemonset@-"]);
    expect(r.checks.find((c) => c.name === "daemonset")!.fix).toBe("install the network: weave install");
  });

  test("an agent pod crash-looping, a node NotReady with NetworkUnavailable, a pod stuck without an address, a pod from another network", async () => {
    const api = await cluster();
    api.store.put(agentPod("n2", false));
    const n3 = api.store.get("v1", "Node", "n3")!;
    api.store.put({
      ...n3,
      status: {
        ...n3.status,
        conditions: [
          {
            type: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: "container runtime network not ready: cni config uninitialized",
          },
          { type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" },
        ],
      },
    });
    api.store.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "stuck", namespace: "default" },
      spec: { nodeName: "n1", containers: [{ name: "c", image: "x" }] },
      status: { phase: "Pending", startTime: old },
    });
    api.store.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "foreign", namespace: "default" },
      spec: { nodeName: "n1", containers: [{ name: "c", image: "x" }] },
      status: { phase: "Running", podIP: "10.244.1.5" },
    });
    const r = await doctor({ kubeconfig: api.kubeconfigPath });
    expect(r.code).toBe(1);
    expect(r.failed.sort()).toEqual([
      "agent-pods@n2",
      "node-network@n3",
      "node-ready@n3",
      "pod-address@n1",
      "pod-address@n1",
    ]);
    const ag = r.checks.find((c) => c.name === "agent-pods" && c.status === "fail")!;
    expect(ag.evidence).toContain("CrashLoopBackOff");
    expect(ag.evidence).toContain("refusing to start");
    expect(ag.fix).toContain("kubectl -n kube-system logs -c weave weave-net-n2");
    const pods = r.checks.filter((c) => c.name === "pod-address" && c.status === "fail").map((c) => c.evidence);
    expect(pods.some((e) => e.startsWith("pod default/stuck has had no address for 10 min"))).toBe(true);
    expect(pods).toContain("pod default/foreign has 10.244.1.5, outside the pod range 10.32.0.0/12");
  });

  test("the pod range holds a node address or the kubernetes ClusterIP", async () => {
    const api = await cluster();
    const n2 = api.store.get("v1", "Node", "n2")!;
    api.store.put({ ...n2, status: { ...n2.status, addresses: [{ type: "InternalIP", address: "10.40.0.7" }] } });
    const svc = api.store.get("v1", "Service", "kubernetes", "default")!;
    api.store.put({ ...svc, spec: { ...svc.spec, clusterIP: "10.33.0.1" } });
    const r = await doctor({ kubeconfig: api.kubeconfigPath });
    expect(r.failed.sort()).toEqual(["range-overlap@-", "range-overlap@n2"]);
  });

  test("could not run at all: exit 2 (API server away, no kubeconfig, bad flags)", async () => {
    const api = await cluster();
    await api.down();
    const r = await doctor({ kubeconfig: api.kubeconfigPath });
    expect(r.code).toBe(2);
    expect(r.err).toContain("cannot read the cluster at");
    expect((await doctor({ kubeconfig: "/nonexistent/kubeconfig" })).code).toBe(2);
    const bad = await run({ output: "yaml" }, { out: () => {}, err: () => {} });
    expect(bad).toBe(2);
    expect(await run({ lab: "x", node: true }, { out: () => {}, err: () => {} })).toBe(2);
  });
});
