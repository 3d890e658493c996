/** `weave lab up|down|status`: printing and flags; the lab itself is net/lab/lab.ts. */
import pc from "picocolors";
import {
  labAgent,
  labCut,
  labDown,
  labUp,
  meshViews,
  pingMatrix,
  pidAlive,
  readLab,
  agentReady,
  type LabState,
  type LabTools,
} from "../net/lab/lab.ts";
import { WeaveError } from "../net/errors.ts";
import { selfExecutable } from "./self.ts";

type LabOptions = {
  name: string;
  nodes: number | string;
  pods: number | string;
  json?: boolean;
  ipallocRange?: string;
};

function tools(): LabTools {
  const self = selfExecutable();
  return { weave: self.argv, plugin: self.pluginPath, log: (m) => process.stderr.write(pc.dim(`lab: ${m}\n`)) };
}

function printSummary(s: LabState, t: LabTools): void {
  const out = process.stdout;
  out.write(pc.bold(`lab ${s.name}: ${s.nodes.length} node(s), ${s.pods.length} pod(s)\n\n`));
  out.write("NODE          ADDRESS        AGENT\n");
  for (const n of s.nodes) {
    const state = !pidAlive(n.agentPid)
      ? pc.red(`stopped`)
      : agentReady(t, n.netns)
        ? pc.green(`ready (pid ${n.agentPid})`)
        : pc.yellow(`not ready (pid ${n.agentPid})`);
    out.write(`${n.name.padEnd(14)}${n.ip.padEnd(15)}${state}\n`);
  }
  out.write("\nPOD               NODE          ADDRESS\n");
  for (const p of s.pods) out.write(`${p.name.padEnd(18)}${p.node.padEnd(14)}${p.ip}\n`);
}

function printPeers(s: LabState, t: LabTools): void {
  const views = meshViews(t, s);
  if (!views.length) return;
  process.stdout.write("\nMESH VIEW OF     PEERS REACHABLE   CONNECTIONS\n");
  for (const v of views)
    process.stdout.write(`${v.node.padEnd(17)}${String(v.reachable).padEnd(18)}${v.established}\n`);
}

function printPings(s: LabState): boolean {
  if (s.pods.length < 2) return true;
  const m = pingMatrix(s);
  const w = Math.max(...s.pods.map((p) => p.name.length)) + 2;
  process.stdout.write(
    `\nping matrix (row pings column):\n${"".padEnd(w)}${s.pods.map((p) => p.name.padEnd(w)).join("")}\n`,
  );
  for (const a of s.pods) {
    const cells = s.pods.map((b) =>
      a === b ? "-" : m.find((x) => x.from === a.name && x.to === b.name)!.ok ? pc.green("ok") : pc.red("FAIL"),
    );
    process.stdout.write(
      a.name.padEnd(w) +
        cells
          .map((c, i) => c + " ".repeat(Math.max(1, w - (s.pods[i] === a ? 1 : c.includes("FAIL") ? 4 : 2))))
          .join("") +
        "\n",
    );
  }
  const failed = m.filter((x) => !x.ok).length;
  process.stdout.write(
    failed ? pc.red(`\n${failed} of ${m.length} pings failed\n`) : pc.green(`\nall ${m.length} pings went through\n`),
  );
  return failed === 0;
}

export async function run(action: string, args: string[], o: LabOptions): Promise<number> {
  const t = tools();
  const need = (n: number, usage: string) => {
    if (args.length !== n) throw new WeaveError("E_USAGE", `usage: weave lab ${usage}`);
  };
  switch (action) {
    case "up": {
      need(0, "up [--name N] [--nodes N] [--pods M]");
      const s = await labUp(o.name, Number(o.nodes), Number(o.pods), t, { ipallocRange: o.ipallocRange });
      printSummary(s, t);
      printPeers(s, t);
      const ok = printPings(s);
      process.stdout.write(
        `\nstate: /run/weave-lab/${s.name}/lab.json; remove with: weave lab down --name ${s.name}\n`,
      );
      return ok ? 0 : 1;
    }
    case "down": {
      const problems = await labDown(o.name, t);
      for (const p of problems) process.stderr.write(pc.red(`lab down: ${p}\n`));
      if (!problems.length) process.stdout.write(`lab ${o.name} removed\n`);
      return problems.length ? 1 : 0;
    }
    case "status": {
      const s = readLab(o.name);
      if (!s) throw new WeaveError("E_NO_LAB", `no lab named "${o.name}"; start one with: weave lab up`);
      if (o.json) process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      else {
        printSummary(s, t);
        printPeers(s, t);
        printPings(s);
      }
      return 0;
    }
    case "agent": {
      need(2, "agent stop|start NODE");
      const n = await labAgent(o.name, args[0]!, args[1]!, t);
      process.stdout.write(`agent of ${n.name} ${args[0] === "stop" ? "stopped" : `started (pid ${n.agentPid})`}\n`);
      return 0;
    }
    case "cut":
    case "heal": {
      need(1, `${action} NODE`);
      const n = labCut(o.name, args[0]!, action === "cut");
      process.stdout.write(
        action === "cut" ? `${n.name} cut off: its TCP 6783 and UDP 6784 traffic is dropped\n` : `${n.name} healed\n`,
      );
      return 0;
    }
    default:
      throw new WeaveError("E_USAGE", `unknown lab action "${action}" (up, down, status, agent, cut, heal)`);
  }
}
