/**
 * `weave policy explain` on a real lab (2 nodes): a deny-all and an allow-from policy
 * applied through the lab's API, then explain asked about a denied and an allowed pair
 * (and a named port), each verdict checked against a real TCP probe from the client
 * pod's network namespace; then `weave doctor --lab` on the same lab: its npc and
 * npc-drift checks pass and npc-drops lists the probe that was dropped, with its reason.
 *
 * Traffic stays inside the lab's namespaces: a TCP listener (a small Bun script, by pid)
 * in the server pod's namespace, probed with bash's /dev/tcp. Explain and doctor run
 * from the source (bun cli.ts); the lab runs the built binaries.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { pidAlive } from "../../net/host/process.ts";
import { LabApi } from "../../net/lab/api-client.ts";
import { createPods, labDown, labUp } from "../../net/lab/lab.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { findNode, type LabPod, readLab } from "../../net/lab/state.ts";
import { canRunHost, ROOT, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { eventually } from "../support/wait.ts";

const PORT = 8080;
const LISTENER = `Bun.listen({ hostname: "0.0.0.0", port: ${PORT}, socket: { open(s) { s.end("ok"); }, data() {} } });`;

type Cli = { code: number; stdout: string; stderr: string };

async function cli(args: string[]): Promise<Cli> {
  const p = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

describe.skipIf(!canRunHost)("weave policy explain on a lab", () => {
  const name = uniqueName("e");
  const ns = `pex-${name}`;
  let api: LabApi;
  const listeners: Subprocess[] = [];
  const lab = () => readLab(name)!;
  const pod = (p: string): LabPod => lab().pods.find((x) => x.namespace === ns && x.name === p)!;
  const connects = (from: string, to: string) =>
    inNs(pod(from).netns.split("/").pop()!, ["timeout", "1", "bash", "-c", `exec 3<>/dev/tcp/${pod(to).ip}/${PORT}`])
      .code === 0;
  const explain = (from: string, to: string, port: string, json = false) =>
    cli([
      "policy",
      "explain",
      "--kubeconfig",
      lab().kubeconfig!,
      "--from",
      `${ns}/${from}`,
      "--to",
      `${ns}/${to}`,
      "--port",
      port,
      ...(json ? ["-o", "json"] : []),
    ]);
  const apply = (policyName: string, spec: object) =>
    api.create(`/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`, {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: policyName },
      spec,
    });

  beforeAll(async () => {
    const s = await labUp(name, 2, 0, tools);
    api = new LabApi(s.controlPlane!.url);
    await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    const node = (i: number) => findNode(lab(), `n${i}`).name;
    await createPods(lab(), [
      {
        name: "server",
        namespace: ns,
        node: node(1),
        labels: { app: "server" },
        ports: [{ name: "http", port: PORT, protocol: "TCP" }],
      },
      { name: "friend", namespace: ns, node: node(2), labels: { role: "friend" }, ports: [] },
      { name: "stranger", namespace: ns, node: node(2), labels: { role: "stranger" }, ports: [] },
    ]);
    const child = Bun.spawn(["nsenter", `--net=${pod("server").netns}`, process.execPath, "-e", LISTENER], {
      stdout: "ignore",
      stderr: "ignore",
    });
    listeners.push(child);
    expect(await eventually(() => connects("stranger", "server"), 5000)).toBe(true);
  }, 120_000);

  afterAll(async () => {
    for (const l of listeners) if (pidAlive(l.pid)) l.kill("SIGKILL");
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("before any policy: allowed, and the probe gets through", async () => {
    const r = await explain("stranger", "server", `${PORT}/TCP`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`ingress of ${ns}/server: not isolated`);
    expect(connects("stranger", "server")).toBe(true);
  }, 30_000);

  test("a deny-all and an allow-from: explain's verdicts match the real probes", async () => {
    await apply("deny-all", { podSelector: {} });
    await apply("allow-friends", {
      podSelector: { matchLabels: { app: "server" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { role: "friend" } } }], ports: [{ port: "http" }] }],
    });
    expect(await eventually(() => !connects("stranger", "server"), 5000)).toBe(true);
    expect(await eventually(() => connects("friend", "server"), 5000)).toBe(true);

    const denied = await explain("stranger", "server", `${PORT}/TCP`);
    expect(denied.code, denied.stderr).toBe(1);
    expect(denied.stdout).toStartWith(`${ns}/stranger -> ${ns}/server ${PORT}/TCP: DENIED`);
    expect(denied.stdout).toContain(`ingress of ${ns}/server: isolated by ${ns}/allow-friends, ${ns}/deny-all`);
    expect(denied.stdout).toContain(`no peer names ${ns}/stranger`);
    expect(connects("stranger", "server")).toBe(false);

    const allowed = await explain("friend", "server", "http", true);
    expect(allowed.code, allowed.stderr).toBe(0);
    const doc = JSON.parse(allowed.stdout);
    expect(doc).toMatchObject({ allowed: true, port: PORT, protocol: "TCP", portName: "http" });
    expect(doc.ingress.allowedBy).toEqual({ policy: `${ns}/allow-friends`, rule: 0 });
    expect(doc.ingress.policies[0].rules[0].ports).toContain(`http/TCP (= ${PORT}/TCP on ${ns}/server)`);
    expect(connects("friend", "server")).toBe(true);

    // another port of the friend: denied by the rule's named port, and so is the probe
    const otherPort = await explain("friend", "server", "8081/TCP");
    expect(otherPort.code).toBe(1);
  }, 60_000);

  test("bad input: exit 2 naming the value", async () => {
    const r = await explain("nobody", "server", `${PORT}/TCP`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--from "${ns}/nobody" names no pod`);
  }, 30_000);

  test("doctor: the controllers synced, no drift, and the drop listed with its reason", async () => {
    const run = async () => {
      const r = await cli(["doctor", "--lab", name, "-o", "json"]);
      return {
        ...r,
        checks: JSON.parse(r.stdout || '{"checks":[]}').checks as {
          name: string;
          status: string;
          node: string;
          evidence: string;
        }[],
      };
    };
    const dropped = `${ns}/stranger -> ${ns}/server ${PORT}/TCP`;
    let r = await run();
    for (let i = 0; i < 10 && !r.checks.some((c) => c.name === "npc-drops" && c.evidence.includes(dropped)); i++) {
      await Bun.sleep(500);
      r = await run();
    }
    const of = (check: string) => r.checks.filter((c) => c.name === check);
    expect(of("npc").map((c) => c.status)).toEqual(["pass", "pass"]);
    expect(
      of("npc-drift").map((c) => c.status),
      JSON.stringify(of("npc-drift")),
    ).toEqual(["pass", "pass"]);
    const drops = of("npc-drops").find((c) => c.status === "warn");
    expect(drops?.node).toBe(findNode(lab(), "n1").name);
    expect(drops?.evidence).toContain(`${dropped}`);
    expect(drops?.evidence).toContain(`ingress of ${ns}/server is isolated by ${ns}/allow-friends, ${ns}/deny-all`);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
});
