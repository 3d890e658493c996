/**
 * A lab for tests: brought up with the real binaries (dist/weave, dist/cni/weave-net),
 * always taken down by the returned `down()`, which removes exactly what lab.json lists.
 */
import { labDown, labUp } from "../../net/lab/lab.ts";
import { readLab, type LabState } from "../../net/lab/state.ts";
import { agentSocket, runPlugin, inNs, type LabTools } from "../../net/lab/plugin.ts";
import { createNamedNetns, deleteNamedNetns, netnsPath } from "../../net/host/netns.ts";
import { PLUGIN, WEAVE, uniqueName } from "./env.ts";

export const tools: LabTools = { weave: [WEAVE], plugin: PLUGIN, log: () => {} };

export type TestLab = {
  state: LabState;
  node: string;
  /** Node 1's agent socket, which its conflist names. */
  socket: string;
  /** Run the real plugin in node 1 with CNI env `env` and config `conf` on stdin. */
  // biome-ignore lint/suspicious/noExplicitAny: a CNI result or error, checked field by field by each test
  cni(env: Record<string, string>, conf: string | object): { code: number; stdout: string; stderr: string; json: any };
  /** A throw-away pod namespace, removed by down(). */
  podNs(): string;
  /** Run a command inside a namespace by name. */
  exec(ns: string, cmd: string[]): { code: number; stdout: string; stderr: string };
  /** What the node's agent holds for pods: `weave status ipam` lines, "10.32.0.5/12 <id> eth0 [ns/pod]". */
  held(): string[];
  /** Host veths on the node (links named vethwepl*), once pending deletions are done. */
  veths(): Promise<string[]>;
  down(): Promise<void>;
};

export async function startLab(o: { nodes?: number; pods?: number } = {}): Promise<TestLab> {
  const name = uniqueName("t");
  const state = await labUp(name, o.nodes ?? 1, o.pods ?? 0, tools);
  const node = state.nodes[0]!.netns;
  const socket = agentSocket(state.nodes[0]!);
  const extra: string[] = [];
  return {
    state,
    node,
    socket,
    cni(env, conf) {
      // node 1's conflist names its agent's socket; a test's own configuration gets it too
      const withSocket = typeof conf === "string" || "socket" in conf ? conf : { ...conf, socket };
      const stdin = typeof withSocket === "string" ? withSocket : JSON.stringify(withSocket);
      const r = inNs(node, [PLUGIN], { env, stdin });
      return { ...r, json: parseOrUndefined(r.stdout) };
    },
    podNs() {
      const n = `${name}-x${extra.length}`;
      createNamedNetns(n);
      extra.push(n);
      return netnsPath(n);
    },
    exec: (ns, cmd) => inNs(ns, cmd),
    held: () =>
      inNs(node, [WEAVE, "status", "ipam"])
        .stdout.split("\n")
        .filter((l) => /^\d+\.\d+\.\d+\.\d+\/\d+ /.test(l) && !l.includes("weave:expose")),
    async veths() {
      // DEL retires a veth into the pending group; the agent deletes the group within ~1 s.
      for (let i = 0; i < 100; i++) {
        const lines = inNs(node, ["ip", "-o", "link", "show"]).stdout.split("\n");
        if (!lines.some((l) => / group 30565 /.test(l))) {
          return lines.map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? "").filter((n) => n.startsWith("vethwepl"));
        }
        await Bun.sleep(50);
      }
      throw new Error("pending veths were not deleted within 5 s");
    },
    async down() {
      for (const n of extra) deleteNamedNetns(n);
      if (readLab(name)) await labDown(name, tools);
    },
  };
}

export { runPlugin };

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
