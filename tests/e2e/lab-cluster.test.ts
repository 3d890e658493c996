/**
 * The lab as a cluster, through the CLI and through the lab's API: pods added and deleted
 * (by `weave lab pod add|del` and by POST/DELETE of a Pod, the path kubectl takes), what
 * the kubelet gives the plugin (CNI_ARGS), nodes added and removed (the heir takes the
 * removed node's space), the agent pods following their agents, and bad input refused
 * with nothing left behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { listNamedNetns } from "../../net/host/netns.ts";
import { LabApi } from "../../net/lab/api-client.ts";
import { labDown, labUp, podNetns } from "../../net/lab/lab.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { readLab } from "../../net/lab/state.ts";
import { canRunHost, uniqueName, WEAVE } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { eventually } from "../support/wait.ts";

describe.skipIf(!canRunHost)("the lab as a cluster", () => {
  const name = uniqueName("c");
  let api: LabApi;
  const weave = (...args: string[]) => {
    const r = Bun.spawnSync([WEAVE, ...args, "--name", name], { env: { ...process.env, NO_COLOR: "1" } });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  const lab = () => readLab(name)!;
  const held = (node: string) => inNs(node, [WEAVE, "status", "ipam"]).stdout;
  const pod = (ns: string, pod: string) => api.get(`/api/v1/namespaces/${ns}/pods/${pod}`);
  const agentPods = async () => (await api.get("/api/v1/namespaces/kube-system/pods"))!.items as LabDoc[];

  beforeAll(async () => {
    const s = await labUp(name, 3, 1, tools);
    api = new LabApi(s.controlPlane!.url);
  }, 90_000);
  afterAll(async () => {
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("lab up: Nodes, the weave-net DaemonSet with a Ready agent pod per node, Running pods with their addresses", async () => {
    const s = lab();
    expect(s.kubeconfig).toBe(`/run/weave-lab/${name}/kubeconfig`);
    expect(existsSync(s.kubeconfig!)).toBe(true);
    const nodes = (await api.get("/api/v1/nodes"))!.items as LabDoc[];
    expect(nodes.map((n) => n.metadata.name).sort()).toEqual(s.nodes.map((n) => n.name).sort());
    for (const n of nodes) {
      const ip = s.nodes.find((x) => x.name === n.metadata.name)!.ip;
      expect(n.status.addresses).toContainEqual({ type: "InternalIP", address: ip });
      expect(condition(n, "Ready")).toBe("True");
    }
    // the agents set NetworkUnavailable=False once ready: they run with the lab's kubeconfig
    expect(await eventually(async () => await allNetworkUp(api), 20_000)).toBe(true);
    const ds = await api.get("/apis/apps/v1/namespaces/kube-system/daemonsets/weave-net");
    expect(await eventually(async () => (await agentPods()).every((p) => condition(p, "Ready") === "True"))).toBe(true);
    const pods = await agentPods();
    expect(pods.map((p) => p.spec.nodeName).sort()).toEqual(s.nodes.map((n) => n.name).sort());
    expect(pods[0]!.spec.containers.map((c: { name: string }) => c.name)).toEqual(["weave", "weave-npc"]);
    expect(pods[0]!.metadata.ownerReferences[0]).toMatchObject({ kind: "DaemonSet", uid: ds!.metadata.uid });
    for (const p of s.pods) {
      const obj = await pod(p.namespace, p.name);
      expect(obj!.status).toMatchObject({ phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }] });
      expect(obj!.spec.nodeName).toBe(p.node);
    }
  }, 60_000);

  test("lab pod add: a Pod through the API, wired with the pod's identity in CNI_ARGS; lab pod del releases it", async () => {
    const r = weave("lab", "pod", "add", "web", "--node", "n2", "--labels", "app=web,tier=front", "--port", "http=80");
    expect(r.code, r.err).toBe(0);
    const entry = lab().pods.find((p) => p.name === "web")!;
    expect(r.out).toContain(`pod default/web on ${name}-n2: ${entry.ip}`);
    expect({ ...entry }).toMatchObject({
      name: "web",
      namespace: "default",
      labels: { app: "web", tier: "front" },
      node: `${name}-n2`,
      netns: expect.stringMatching(/^\/var\/run\/netns\//),
      ip: expect.stringMatching(/^10\./),
      containerId: expect.stringMatching(/^[0-9a-f]{32}$/),
    });
    const obj = await pod("default", "web");
    expect(obj!.spec.containers[0].ports).toEqual([{ name: "http", containerPort: 80, protocol: "TCP" }]);
    expect(held(`${name}-n2`)).toContain(`${entry.containerId} eth0 default/web`);
    const from = lab().pods.find((p) => p.node === `${name}-n1`)!;
    expect(inNs(podNetns(from), ["ping", "-c", "1", "-W", "2", entry.ip]).code).toBe(0);

    const d = weave("lab", "pod", "del", "web");
    expect(d.code, d.err).toBe(0);
    expect(await pod("default", "web")).toBeUndefined();
    expect(lab().pods.some((p) => p.name === "web")).toBe(false);
    expect(await eventually(() => !held(`${name}-n2`).includes(entry.containerId))).toBe(true);
    expect(listNamedNetns()).not.toContain(podNetns(entry));
  }, 60_000);

  test("a Pod applied to the API (as kubectl does) in a new namespace is wired; deleting it runs CNI DEL", async () => {
    await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } });
    const body = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "cart", namespace: "shop", labels: { app: "cart" } },
      spec: { nodeName: `${name}-n3`, containers: [{ name: "c", image: "busybox" }] },
    };
    await api.create("/api/v1/namespaces/shop/pods", body);
    expect(await eventually(async () => !!(await pod("shop", "cart"))?.status?.podIP)).toBe(true);
    const entry = lab().pods.find((p) => p.name === "cart")!;
    expect(entry).toMatchObject({ namespace: "shop", node: `${name}-n3` });
    expect(held(`${name}-n3`)).toContain("shop/cart");
    expect(await api.delete("/api/v1/namespaces/shop/pods/cart")).toBe(true);
    expect(await eventually(() => !held(`${name}-n3`).includes("shop/cart"))).toBe(true);
    expect(await eventually(() => !lab().pods.some((p) => p.name === "cart"))).toBe(true);
    expect(await eventually(() => !listNamedNetns().includes(podNetns(entry)))).toBe(true);
  }, 60_000);

  test("bad input to lab pod add is refused, naming the value, and leaves nothing behind", async () => {
    const before = { pods: lab().pods.length, netns: listNamedNetns().sort(), api: await podNames(api) };
    const cases: [string[], string][] = [
      [["x1", "--node", "n9"], `has no node "n9"`],
      [["x2", "--node", "n1", "--labels", "app"], '--labels "app" is not key=value'],
      [["x3", "--node", "n1", "--labels=-bad=1"], '--labels "-bad" is not a label key'],
      [["x4", "--node", "n1", "--port", "http"], '--port "http" is not NAME=PORT/PROTO'],
      [["x5", "--node", "n1", "--port", "http=70000/TCP"], "has a port outside 1-65535"],
      [["x6", "--node", "n1", "--port", "http=80/ICMP"], "has a protocol that is not TCP, UDP or SCTP"],
      [["x7", "--node", "n1", "--namespace", "nope"], 'namespace "nope" does not exist'],
      [[lab().pods[0]!.name, "--node", "n1"], "already exists"],
      [["Bad_Name", "--node", "n1"], 'pod name "Bad_Name" is not a DNS subdomain'],
      [["x8"], "--node is required"],
    ];
    for (const [args, said] of cases) {
      const r = weave("lab", "pod", "add", ...args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.err, args.join(" ")).toContain(said);
    }
    expect(weave("lab", "pod", "del", "ghost").err).toContain('no pod "ghost" in namespace "default"');
    expect(weave("lab", "node", "remove", "n9").err).toContain('has no node "n9"');
    expect(lab().pods.length).toBe(before.pods);
    expect(listNamedNetns().sort()).toEqual(before.netns);
    expect(await podNames(api)).toEqual(before.api);
  }, 60_000);

  test("an agent stopped: its pod is not ready; started again: Ready with one restart", async () => {
    expect(weave("lab", "agent", "stop", "n3").code).toBe(0);
    const mine = async () => (await agentPods()).find((p) => p.spec.nodeName === `${name}-n3`)!;
    expect(await eventually(async () => condition(await mine(), "Ready") === "False")).toBe(true);
    expect((await mine()).status.containerStatuses[0].state.terminated).toBeDefined();
    expect(weave("lab", "agent", "start", "n3").code).toBe(0);
    expect(await eventually(async () => condition(await mine(), "Ready") === "True")).toBe(true);
    expect((await mine()).status.containerStatuses[0].restartCount).toBe(1);
  }, 60_000);

  test("a pod deleted while its agent is down keeps Terminating until CNI DEL succeeds: its address is released", async () => {
    expect(weave("lab", "pod", "add", "orphan", "--node", "n2").code).toBe(0);
    const entry = lab().pods.find((p) => p.name === "orphan")!;
    expect(weave("lab", "agent", "stop", "n2").code).toBe(0);
    expect(await api.delete("/api/v1/namespaces/default/pods/orphan")).toBe(true);
    await Bun.sleep(2500);
    const terminating = await pod("default", "orphan");
    expect(terminating?.metadata.deletionTimestamp).toBeDefined();
    expect(weave("lab", "agent", "start", "n2").code).toBe(0);
    expect(await eventually(async () => (await pod("default", "orphan")) === undefined, 20_000)).toBe(true);
    expect(held(`${name}-n2`)).not.toContain(entry.containerId);
    expect(lab().pods.some((p) => p.name === "orphan")).toBe(false);
  }, 60_000);

  test("lab node add: a fourth node with its Node, agent pod and mesh; lab node remove: the heir takes its space", async () => {
    const r = weave("lab", "node", "add");
    expect(r.code, r.err).toBe(0);
    const n4 = `${name}-n4`;
    expect(r.out).toContain(`node ${n4} added (198.18.0.14)`);
    expect((await api.get(`/api/v1/nodes/${n4}`))?.status.addresses).toContainEqual({
      type: "InternalIP",
      address: "198.18.0.14",
    });
    expect(await eventually(async () => (await agentPods()).some((p) => p.spec.nodeName === n4))).toBe(true);
    expect(weave("lab", "pod", "add", "late", "--node", "n4").code).toBe(0);
    const late = lab().pods.find((p) => p.name === "late")!;
    const from = lab().pods.find((p) => p.node === `${name}-n1`)!;
    expect(inNs(podNetns(from), ["ping", "-c", "1", "-W", "2", late.ip]).code).toBe(0);
    const owned = ownedBy(held(`${name}-n1`), n4);
    expect(owned).not.toBe("");

    const rm = weave("lab", "node", "remove", "n4");
    expect(rm.code, rm.err).toBe(0);
    expect(await api.get(`/api/v1/nodes/${n4}`)).toBeUndefined();
    expect(lab().nodes.map((n) => n.name)).not.toContain(n4);
    expect(listNamedNetns()).not.toContain(n4);
    expect(lab().pods.some((p) => p.name === "late")).toBe(false);
    // the space n4 owned moves to one of the others (the ring's heir)
    const movedTo = () => lab().nodes.find((n) => ownedBy(held(`${name}-n1`), n.name).includes(owned));
    expect(await eventually(() => movedTo() !== undefined, 30_000)).toBe(true);
    expect(await eventually(async () => !(await agentPods()).some((p) => p.spec.nodeName === n4))).toBe(true);
  }, 90_000);
});

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects as the API returns them
type LabDoc = Record<string, any>;

function condition(o: LabDoc, type: string): string | undefined {
  return o.status?.conditions?.find((c: { type: string }) => c.type === type)?.status;
}

async function allNetworkUp(api: LabApi): Promise<boolean> {
  const nodes = (await api.get("/api/v1/nodes"))!.items as LabDoc[];
  return nodes.every((n) => condition(n, "NetworkUnavailable") === "False");
}

async function podNames(api: LabApi): Promise<string[]> {
  const list = (await api.get("/api/v1/pods"))!.items as LabDoc[];
  return list.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).sort();
}

/** The ranges `weave status ipam` says the peer with this nickname owns (its second line). */
function ownedBy(ipam: string, nickname: string): string {
  const lines = ipam.split("\n");
  const at = lines.findIndex((l) => l.includes(`(${nickname})`));
  return at < 0 ? "" : (lines[at + 1] ?? "").trim();
}
