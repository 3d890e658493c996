/**
 * Closed while it restarts: under a policy that admits `friend` and not `stranger` to the
 * server, the policy controller is killed with SIGKILL (and, separately, the agent),
 * while probes run the whole time:
 *   - a connection `friend` opened before the kill echoes a line every 50 ms throughout:
 *     not one echo is lost (an allowed established flow is never cut);
 *   - `stranger` tries to connect every 100 ms throughout: not one attempt gets through;
 *   - a policy change made while the controller is down (stranger allowed too) is
 *     enforced once it is back, and not before.
 * Processes in the pods' namespaces are small Bun scripts, started and stopped by pid.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { pidAlive } from "../../net/host/process.ts";
import { LabApi } from "../../net/lab/api-client.ts";
import { createPods, labAgent, labDown, labUp } from "../../net/lab/lab.ts";
import { labNpc } from "../../net/lab/npc.ts";
import { findNode, type LabPod, readLab } from "../../net/lab/state.ts";
import { canRunHost, uniqueName } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { eventually } from "../support/wait.ts";

const PORT = 8090;
const ECHO_SERVER = `Bun.listen({ hostname: "0.0.0.0", port: ${PORT}, socket: { data(s, d) { s.write(d); } } });`;

/**
 * Opens one connection, writes a line every 50 ms, counts echoes and the longest wait
 * between two; on stdin's end (and once every echo is back, or 3 s) prints
 * {sent, echoed, broken, maxGapMs}.
 */
const ECHO_CLIENT = (ip: string) => `
let sent = 0, echoed = 0, broken = false, last = Date.now(), maxGapMs = 0;
const s = await Bun.connect({ hostname: "${ip}", port: ${PORT}, socket: {
  data(_s, d) {
    echoed += d.toString().split("\\n").filter(Boolean).length;
    maxGapMs = Math.max(maxGapMs, Date.now() - last);
    last = Date.now();
  },
  close() { broken = true; }, error() { broken = true; },
} });
const timer = setInterval(() => { sent++; s.write("x\\n"); }, 50);
console.log("ready");
for await (const _ of Bun.stdin.stream()) {}
clearInterval(timer);
for (const end = Date.now() + 3000; echoed < sent && Date.now() < end; ) await Bun.sleep(20);
console.log(JSON.stringify({ sent, echoed, broken, maxGapMs }));
process.exit(0);`;

/** Tries a new connection every 100 ms (300 ms timeout each); on stdin's end prints {tries, connected}. */
const PROBER = (ip: string) => `
let tries = 0, connected = 0, stop = false;
(async () => { for await (const _ of Bun.stdin.stream()) {} stop = true; })();
console.log("ready");
while (!stop) {
  tries++;
  const ok = await new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), 300);
    Bun.connect({ hostname: "${ip}", port: ${PORT}, socket: { open(s) { clearTimeout(t); s.end(); resolve(true); },
      data() {}, connectError() { clearTimeout(t); resolve(false); } } }).catch(() => resolve(false));
  });
  if (ok) connected++;
  await Bun.sleep(100);
}
console.log(JSON.stringify({ tries, connected }));
process.exit(0);`;

type Watcher = { proc: Subprocess<"pipe", "pipe", "inherit">; lines: AsyncIterator<string> };

describe.skipIf(!canRunHost)("NetworkPolicy stays closed while weave npc or the agent restarts", () => {
  const name = uniqueName("r");
  const ns = `rs-${name}`;
  let api: LabApi;
  const started: Subprocess[] = [];
  const lab = () => readLab(name)!;
  const pod = (p: string): LabPod => lab().pods.find((x) => x.namespace === ns && x.name === p)!;
  const policies = `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`;
  const allowFrom = (roles: string[]) => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "server-in" },
    spec: {
      podSelector: { matchLabels: { app: "server" } },
      ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: "role", operator: "In", values: roles }] } }] }],
    },
  });

  const spawnIn = (p: string, script: string) => {
    const proc = Bun.spawn(["nsenter", `--net=${pod(p).netns}`, process.execPath, "-e", script], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    started.push(proc);
    return proc;
  };
  const watch = async (p: string, script: string): Promise<Watcher> => {
    const proc = spawnIn(p, script);
    const lines = readLines(proc.stdout);
    expect((await lines.next()).value).toBe("ready");
    return { proc, lines };
  };
  const finish = async (w: Watcher) => {
    w.proc.stdin.end();
    return JSON.parse((await w.lines.next()).value as string);
  };
  const connectsOnce = async (from: string) => {
    const w = await watch(from, PROBER(pod("server").ip));
    await Bun.sleep(250);
    const r = await finish(w);
    return r.connected > 0;
  };

  beforeAll(async () => {
    const s = await labUp(name, 2, 0, tools);
    api = new LabApi(s.controlPlane!.url);
    await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    const node = (i: number) => findNode(lab(), `n${i}`).name;
    await createPods(lab(), [
      { name: "server", namespace: ns, node: node(1), labels: { app: "server" }, ports: [] },
      { name: "friend", namespace: ns, node: node(2), labels: { role: "friend" }, ports: [] },
      { name: "stranger", namespace: ns, node: node(2), labels: { role: "stranger" }, ports: [] },
    ]);
    spawnIn("server", ECHO_SERVER);
    await api.create(policies, allowFrom(["friend"]));
    expect(await eventually(async () => !(await connectsOnce("stranger")), 10_000)).toBe(true);
    expect(await connectsOnce("friend")).toBe(true);
  }, 120_000);

  afterAll(async () => {
    for (const p of started) if (pidAlive(p.pid)) p.kill("SIGKILL");
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  test("kill -9 weave npc: the friend's flow is not cut, the stranger never gets in; a change made meanwhile lands on restart", async () => {
    const flow = await watch("friend", ECHO_CLIENT(pod("server").ip));
    const prober = await watch("stranger", PROBER(pod("server").ip));
    const n1 = findNode(lab(), "n1");
    process.kill(n1.npcPid!, "SIGKILL");
    expect(await eventually(() => !pidAlive(n1.npcPid!), 5000)).toBe(true);
    // while it is down, the policy admits the stranger too: nothing may change yet
    await api.request("PUT", `${policies}/server-in`, allowFrom(["friend", "stranger"]));
    await Bun.sleep(2000);
    const whileDown = await finish(prober);
    expect(whileDown.tries).toBeGreaterThanOrEqual(3);
    expect(whileDown.connected).toBe(0);

    await labNpc(name, "start", "n1", tools);
    expect(await eventually(() => connectsOnce("stranger"), 10_000)).toBe(true);
    const echoes = await finish(flow);
    expect(echoes.broken).toBe(false);
    expect(echoes.sent).toBeGreaterThan(20);
    expect(echoes.echoed).toBe(echoes.sent);
    expect(echoes.maxGapMs).toBeLessThan(1000);
    await api.request("PUT", `${policies}/server-in`, allowFrom(["friend"]));
    expect(await eventually(async () => !(await connectsOnce("stranger")), 10_000)).toBe(true);
  }, 90_000);

  test("kill -9 the agent: the rules stay, the flow goes on, the stranger stays out", async () => {
    const flow = await watch("friend", ECHO_CLIENT(pod("server").ip));
    const prober = await watch("stranger", PROBER(pod("server").ip));
    const n1 = findNode(lab(), "n1");
    process.kill(n1.agentPid, "SIGKILL");
    expect(await eventually(() => !pidAlive(n1.agentPid), 5000)).toBe(true);
    await Bun.sleep(1500);
    await labAgent(name, "start", "n1", tools);
    await Bun.sleep(500);
    const during = await finish(prober);
    expect(during.tries).toBeGreaterThanOrEqual(3);
    expect(during.connected).toBe(0);
    const echoes = await finish(flow);
    expect(echoes.broken).toBe(false);
    expect(echoes.echoed).toBe(echoes.sent);
    // the restarted agent keeps the kernel's VXLAN entries until it has heard from the mesh
    expect(echoes.maxGapMs).toBeLessThan(1000);
    expect(await connectsOnce("friend")).toBe(true);
  }, 90_000);
});

/** The lines of a process's stdout, one at a time. */
function readLines(stream: ReadableStream<Uint8Array>): AsyncIterator<string> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  let buffered = "";
  return {
    async next() {
      for (;;) {
        const nl = buffered.indexOf("\n");
        if (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          return { value: line, done: false };
        }
        const chunk = await reader.read();
        if (chunk.done) return { value: buffered, done: true };
        buffered += decoder.decode(chunk.value, { stream: true });
      }
    },
  };
}
