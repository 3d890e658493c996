/**
 * The pod agents (pod-agent.ts), one per model pod, started inside the pod's network
 * namespace by nsenter (which execs, so the pid we hold is the agent's) and spoken to over
 * stdin/stdout in JSON lines. `probeAll` asks every client at once to probe its targets in
 * parallel, so a 9x9 matrix costs about one probe timeout. `stop` kills each by its pid.
 */
import { resolve } from "node:path";
import { pidAlive, stopPid } from "../../../net/host/process.ts";
import type { Protocol } from "./model.ts";
import type { ProbeResult } from "./pod-agent.ts";

const AGENT = resolve(import.meta.dir, "pod-agent.ts");

export type Target = { ip: string; port: number; protocol: Protocol };

type Agent = {
  key: string;
  pid: number;
  proc: Bun.Subprocess<"pipe", "pipe", "pipe">;
  waiting: Map<number, (r: ProbeResult[]) => void>;
  ready: Promise<void>;
};

export class PodAgents {
  private readonly agents = new Map<string, Agent>();
  private nextId = 1;

  /** Start the agent of pod `key` in `netns`, serving TCP and UDP on `ports`; resolves once it listens. */
  async start(key: string, netns: string, ports: number[]): Promise<void> {
    const list = ports.join(",");
    const argv = ["nsenter", `--net=${netns}`, process.execPath, AGENT, "--tcp", list, "--udp", list];
    const proc = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    let readied: () => void = () => {};
    const ready = new Promise<void>((r) => {
      readied = r;
    });
    const agent: Agent = { key, pid: proc.pid, proc, waiting: new Map(), ready };
    this.agents.set(key, agent);
    void this.read(agent, readied);
    let timer: Timer | undefined;
    const failed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the pod agent of ${key} did not listen within 10 s`)), 10_000);
      void proc.exited.then(async (code) => {
        const err = (await new Response(proc.stderr).text()).trim();
        reject(new Error(`the pod agent of ${key} exited (${code}) before it listened: ${err}`));
      });
    });
    failed.catch(() => {}); // once it listens, an exit is stop()'s doing
    try {
      await Promise.race([ready, failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async read(agent: Agent, readied: () => void): Promise<void> {
    let pending = "";
    for await (const chunk of agent.proc.stdout) {
      pending += new TextDecoder().decode(chunk);
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const msg = JSON.parse(pending.slice(0, nl)) as { ready?: boolean; id?: number; results?: ProbeResult[] };
        pending = pending.slice(nl + 1);
        if (msg.ready) readied();
        if (msg.id !== undefined) agent.waiting.get(msg.id)?.(msg.results!);
      }
    }
  }

  /** Probe from `client` every target at once; results in the targets' order. */
  probe(client: string, targets: Target[], timeoutMs = 1000): Promise<ProbeResult[]> {
    const agent = this.agents.get(client);
    if (!agent) throw new Error(`no pod agent for ${client}`);
    const id = this.nextId++;
    const answer = new Promise<ProbeResult[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${client} did not answer probe ${id}`)), timeoutMs + 5000);
      agent.waiting.set(id, (r) => {
        clearTimeout(timer);
        agent.waiting.delete(id);
        resolve(r);
      });
    });
    agent.proc.stdin.write(`${JSON.stringify({ id, timeoutMs, targets })}\n`);
    agent.proc.stdin.flush();
    return answer;
  }

  /** Every client probes its own targets, all clients at once. */
  async probeAll(targets: Map<string, Target[]>, timeoutMs = 1000): Promise<Map<string, ProbeResult[]>> {
    const clients = [...targets.keys()];
    const results = await Promise.all(clients.map((c) => this.probe(c, targets.get(c)!, timeoutMs)));
    return new Map(clients.map((c, i) => [c, results[i]!]));
  }

  pids(): number[] {
    return [...this.agents.values()].map((a) => a.pid);
  }

  /** Kill every agent by its pid (stdin closed first: an agent exits on its own when it ends). */
  async stop(): Promise<void> {
    for (const a of this.agents.values()) {
      try {
        a.proc.stdin.end();
      } catch {}
      if (pidAlive(a.pid)) await stopPid(a.pid);
    }
    this.agents.clear();
  }
}
