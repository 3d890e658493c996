/**
 * The enforcement engine of `weave npc` on a real lab (2 nodes): policies applied through
 * the lab's API isolate a pod and let exactly the allowed peer through, deleting them
 * reopens, a new pod a deny policy selects is closed from its first packet even while its
 * node's controller is down, and a controller killed with SIGKILL leaves its rules (denied
 * stays denied) and, started again, syncs a change made while it was away.
 *
 * Traffic stays inside the lab's namespaces: a TCP listener (a small Bun script, by pid)
 * in the server pod's namespace, probed with bash's /dev/tcp from client pods. The
 * exhaustive x/y/z matrix is tests/e2e/netpol*.ts's.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { pidAlive } from "../../net/host/process.ts";
import { LabApi } from "../../net/lab/api-client.ts";
import { createPods, labDown, labUp } from "../../net/lab/lab.ts";
import { labNpc } from "../../net/lab/npc.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { findNode, type LabPod, readLab } from "../../net/lab/state.ts";
import { canRunHost, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { eventually } from "../support/wait.ts";

const PORT = 8080;
const LISTENER = `Bun.listen({ hostname: "0.0.0.0", port: ${PORT}, socket: { open(s) { s.end("ok"); }, data() {} } });`;

describe.skipIf(!canRunHost)("weave npc on a lab", () => {
  const name = uniqueName("p");
  const ns = `npc-${name}`;
  let api: LabApi;
  const listeners: Subprocess[] = [];
  const policies = `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`;
  const lab = () => readLab(name)!;
  const pod = (p: string): LabPod => lab().pods.find((x) => x.namespace === ns && x.name === p)!;
  const node = (i: number) => findNode(lab(), `n${i}`);

  /** Whether `from` opens a TCP connection to `to`'s listener within a second. */
  const connects = (from: string, to: string) =>
    inNs(pod(from).netns.split("/").pop()!, ["timeout", "1", "bash", "-c", `exec 3<>/dev/tcp/${pod(to).ip}/${PORT}`])
      .code === 0;
  const pings = (from: string, to: string) =>
    inNs(pod(from).netns.split("/").pop()!, ["ping", "-c", "1", "-W", "1", pod(to).ip]).code === 0;
  const listen = (p: string) => {
    const child = Bun.spawn(["nsenter", `--net=${pod(p).netns}`, process.execPath, "-e", LISTENER], {
      stdout: "ignore",
      stderr: "ignore",
    });
    listeners.push(child);
  };
  const apply = (policyName: string, spec: object) =>
    api.create(policies, {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: policyName },
      spec,
    });
  const remove = (policyName: string) => api.delete(`${policies}/${policyName}`);
  const addPods = (...pods: { name: string; node: number; labels: Record<string, string> }[]) =>
    createPods(
      lab(),
      pods.map((p) => ({ name: p.name, namespace: ns, node: node(p.node).name, labels: p.labels, ports: [] })),
    );

  beforeAll(async () => {
    const s = await labUp(name, 2, 0, tools);
    api = new LabApi(s.controlPlane!.url);
    await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    await addPods(
      { name: "server", node: 1, labels: { app: "server" } },
      { name: "friend", node: 2, labels: { role: "friend" } },
      { name: "stranger", node: 2, labels: { role: "stranger" } },
      { name: "neighbour", node: 1, labels: { role: "friend" } },
    );
    listen("server");
    expect(await eventually(() => connects("friend", "server"), 5000)).toBe(true);
  }, 120_000);

  afterAll(async () => {
    for (const l of listeners) if (pidAlive(l.pid)) l.kill("SIGKILL");
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("a deny-all ingress policy isolates the pod: ping and TCP fail, from either node", async () => {
    await apply("deny", { podSelector: {} });
    expect(await eventually(() => !connects("friend", "server"), 5000)).toBe(true);
    expect(connects("neighbour", "server")).toBe(false);
    expect(pings("stranger", "server")).toBe(false);
    // the node itself still reaches its pod (kubelet's probes)
    const fromNode = inNs(node(1).netns, [
      "timeout",
      "1",
      "bash",
      "-c",
      `exec 3<>/dev/tcp/${pod("server").ip}/${PORT}`,
    ]);
    expect(fromNode.code).toBe(0);
  }, 30_000);

  test("an allow-from policy lets exactly the selected peers through, on its port only", async () => {
    await apply("allow-friends", {
      podSelector: { matchLabels: { app: "server" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { role: "friend" } } }], ports: [{ port: PORT }] }],
    });
    expect(await eventually(() => connects("friend", "server"), 5000)).toBe(true);
    expect(connects("neighbour", "server")).toBe(true);
    expect(connects("stranger", "server")).toBe(false);
    // a rule with ports allows TCP on them, not ICMP
    expect(pings("friend", "server")).toBe(false);
  }, 30_000);

  test("deleting the policies reopens the pod", async () => {
    await remove("allow-friends");
    await remove("deny");
    expect(await eventually(() => connects("stranger", "server"), 5000)).toBe(true);
    expect(pings("stranger", "server")).toBe(true);
  }, 30_000);

  test("a new pod a deny policy selects is closed from its first packet, even with its node's controller down", async () => {
    await apply("deny", { podSelector: {} });
    expect(await eventually(() => !connects("friend", "server"), 5000)).toBe(true);
    // with n1's controller stopped, only the CNI ADD path can close the new pod
    await labNpc(name, "stop", "n1", tools);
    await addPods({ name: "late", node: 1, labels: { app: "late" } });
    listen("late");
    const pending = inNs(node(1).netns, ["nft", "list", "map", "inet", "weave-npc", "pending-ingress-v4"]).stdout;
    expect(pending).toContain(`${pod("late").ip} : jump ingress-pending/${ns}`);
    expect(connects("friend", "late")).toBe(false);
    // once the controller is back it knows the pod: its own chain replaces the pending entry
    await labNpc(name, "start", "n1", tools);
    const table = inNs(node(1).netns, ["nft", "list", "table", "inet", "weave-npc"]).stdout;
    expect(table).toContain(`${pod("late").ip} : jump ingress/${ns}/late`);
    expect(inNs(node(1).netns, ["nft", "list", "map", "inet", "weave-npc", "pending-ingress-v4"]).stdout).not.toContain(
      pod("late").ip,
    );
    expect(connects("friend", "late")).toBe(false);
  }, 60_000);

  test("kill -9 of weave npc keeps its rules; started again, it syncs a change made while it was down", async () => {
    await apply("allow-friends", {
      podSelector: { matchLabels: { app: "server" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { role: "friend" } } }] }],
    });
    expect(await eventually(() => connects("friend", "server"), 5000)).toBe(true);
    const pid = node(1).npcPid!;
    process.kill(pid, "SIGKILL");
    expect(await eventually(() => !pidAlive(pid), 5000)).toBe(true);
    expect(connects("stranger", "server")).toBe(false);
    expect(connects("friend", "server")).toBe(true);
    // while it is down: the allow goes; the kernel still has it
    await remove("allow-friends");
    await Bun.sleep(300);
    expect(connects("friend", "server")).toBe(true);
    await labNpc(name, "start", "n1", tools);
    expect(await eventually(() => !connects("friend", "server"), 5000)).toBe(true);
    expect(connects("stranger", "server")).toBe(false);
  }, 60_000);

  test("each drop is logged with its pods and the policies that isolate the destination", async () => {
    expect(connects("stranger", "server")).toBe(false);
    const log = () => inNs(node(1).netns, ["cat", `${node(1).dataDir}/npc.log`]).stdout;
    const line = `(${ns}/stranger) -> ${pod("server").ip}:${PORT} (${ns}/server): ingress of ${ns}/server is isolated by ${ns}/deny`;
    expect(await eventually(() => log().includes(line), 3000)).toBe(true);
    const metrics = inNs(node(1).netns, [
      "bash",
      "-c",
      "exec 3<>/dev/tcp/127.0.0.1/6781; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
    ]);
    expect(metrics.stdout).toMatch(
      new RegExp(`weavenpc_blocked_connections_total\\{protocol="TCP",dport="${PORT}"\\} [1-9]`),
    );
  }, 30_000);
});
