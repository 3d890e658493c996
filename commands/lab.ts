/** `weave lab ...`: printing and flags; the lab itself is net/lab/ (lab.ts, changes.ts, control-plane.ts). */
import pc from "picocolors";
import { labAgent, labBlock, labCut, labDown, labUp, meshViews, pingMatrix, agentReady } from "../net/lab/lab.ts";
import { chooseLab, mustReadLab, type LabState } from "../net/lab/state.ts";
import type { LabTools } from "../net/lab/plugin.ts";
import { pidAlive } from "../net/host/process.ts";
import { WeaveError } from "../net/errors.ts";
import { selfExecutable } from "./self.ts";

type LabOptions = {
  name?: string;
  nodes: number | string;
  pods: number | string;
  json?: boolean;
  ipallocRange?: string;
  node?: string;
  namespace?: string;
  labels?: string;
  port?: string | string[];
  passwordFile?: string;
  udp?: string | number;
};

/**
 * The lab's password (up) or a new node's (node add): --password-file or WEAVE_PASSWORD,
 * read as the agent reads it; then gone from our environment, so nothing the lab starts
 * inherits it (the agents get it as a file, mode 0600).
 */
async function labPassword(o: LabOptions): Promise<Uint8Array | undefined> {
  const { readPassword } = await import("./agent.ts");
  const p = readPassword(o, process.env);
  delete process.env.WEAVE_PASSWORD;
  delete process.env.WEAVE_PASSWORD_NEXT;
  if (!p) return undefined;
  // the file the agents read: one line, or two while rotating (current, then next)
  const nl = Buffer.from("\n");
  return new Uint8Array(Buffer.concat(p.next ? [p.bytes, nl, p.next, nl] : [p.bytes, nl]));
}

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
  out.write("\nPOD               NAMESPACE     NODE          ADDRESS\n");
  for (const p of s.pods) out.write(`${p.name.padEnd(18)}${p.namespace.padEnd(14)}${p.node.padEnd(14)}${p.ip}\n`);
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

const USAGE = {
  up: "up [--name N] [--nodes N] [--pods M] [--ipalloc-range CIDR] [--password-file FILE]",
  agent: "agent stop|start NODE",
  npc: "npc stop|start NODE",
  pod: "pod add NAME --node NODE [--namespace NS] [--labels k=v,...] [--port NAME=PORT/PROTO]... | pod del NAME [--namespace NS]",
  node: "node add [--password-file FILE] | node remove NODE",
  block: "block|unblock NODE PEER [--udp PORT]",
  password: "password set|rotate [--password-file FILE] (or WEAVE_PASSWORD [+ WEAVE_PASSWORD_NEXT] in the environment)",
};

function udpPort(v: string | number): number {
  const port = Number(v);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new WeaveError("E_USAGE", `--udp ${v}: not a port (1-65535), e.g. --udp 6784 for VXLAN`);
  return port;
}

function printKubectl(s: LabState): void {
  if (!s.kubeconfig) return;
  process.stdout.write(`\nkubectl: export KUBECONFIG=${s.kubeconfig}; kubectl get pods -A -o wide\n`);
}

export async function run(action: string, args: string[], o: LabOptions): Promise<number> {
  const t = tools();
  const need = (n: number, usage: string) => {
    if (args.length !== n) throw new WeaveError("E_USAGE", `usage: weave lab ${usage}`);
  };
  const name = action === "up" ? (o.name ?? "lab") : chooseLab(o.name);
  switch (action) {
    case "up": {
      need(0, USAGE.up);
      const password = await labPassword(o);
      const s = await labUp(name, Number(o.nodes), Number(o.pods), t, { ipallocRange: o.ipallocRange, password });
      password?.fill(0);
      printSummary(s, t);
      printPeers(s, t);
      const ok = printPings(s);
      printKubectl(s);
      process.stdout.write(
        `\nstate: /run/weave-lab/${s.name}/lab.json; remove with: weave lab down --name ${s.name}\n`,
      );
      return ok ? 0 : 1;
    }
    case "down": {
      const problems = await labDown(name, t);
      for (const p of problems) process.stderr.write(pc.red(`lab down: ${p}\n`));
      if (!problems.length) process.stdout.write(`lab ${name} removed\n`);
      return problems.length ? 1 : 0;
    }
    case "status": {
      const s = mustReadLab(name);
      if (o.json) process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      else {
        printSummary(s, t);
        printPeers(s, t);
        printPings(s);
        printKubectl(s);
      }
      return 0;
    }
    case "serve": {
      need(0, "serve [--name N] (started by lab up: the lab's API server, kubelet and controllers)");
      const { serveLab } = await import("../net/lab/control-plane.ts");
      await serveLab(name, t);
      return 0;
    }
    case "agent": {
      need(2, USAGE.agent);
      const n = await labAgent(name, args[0]!, args[1]!, t);
      process.stdout.write(`agent of ${n.name} ${args[0] === "stop" ? "stopped" : `started (pid ${n.agentPid})`}\n`);
      return 0;
    }
    case "npc": {
      need(2, USAGE.npc);
      const { labNpc } = await import("../net/lab/npc.ts");
      const n = await labNpc(name, args[0]!, args[1]!, t);
      const said = args[0] === "stop" ? "stopped (its rules stay)" : `started and synced (pid ${n.npcPid})`;
      process.stdout.write(`weave npc of ${n.name} ${said}\n`);
      return 0;
    }
    case "cut":
    case "heal": {
      need(1, `${action} NODE`);
      const n = labCut(name, args[0]!, action === "cut");
      const wg = mustReadLab(name).passwordFile ? ", UDP 6785" : "";
      const said = action === "cut" ? `cut off: its TCP 6783, UDP 6783, 6784${wg} traffic is dropped` : "healed";
      process.stdout.write(`${n.name} ${said}\n`);
      return 0;
    }
    case "block":
    case "unblock": {
      need(2, USAGE.block);
      const what = o.udp === undefined ? "all" : { udp: udpPort(o.udp) };
      const [a, b] = labBlock(name, args[0]!, args[1]!, what, action === "block");
      const traffic = what === "all" ? "all traffic" : `UDP ${what.udp}`;
      const said = action === "block" ? "dropped" : "no longer dropped";
      process.stdout.write(`${traffic} between ${a.name} and ${b.name} ${said}\n`);
      return 0;
    }
    case "pod":
      return await pod(name, args, o);
    case "node":
      return await node(name, args, t, o);
    case "password":
      return await password(name, args, t, o);
    default:
      throw new WeaveError(
        "E_USAGE",
        `unknown lab action "${action}" (up, down, status, agent, npc, cut, heal, block, unblock, pod, node, password)`,
      );
  }
}

async function pod(name: string, args: string[], o: LabOptions): Promise<number> {
  const { labPodAdd, labPodDel } = await import("../net/lab/changes.ts");
  const [verb, podName, ...extra] = args;
  if (!podName || extra.length || (verb !== "add" && verb !== "del"))
    throw new WeaveError("E_USAGE", `usage: weave lab ${USAGE.pod}`);
  if (verb === "del") {
    await labPodDel(name, podName, o.namespace);
    process.stdout.write(`pod ${o.namespace ?? "default"}/${podName} deleted\n`);
    return 0;
  }
  if (!o.node) throw new WeaveError("E_USAGE", `lab pod add ${podName}: --node is required (a node of lab ${name})`);
  const ports = o.port === undefined ? [] : [o.port].flat().map(String);
  const p = await labPodAdd(name, {
    name: podName,
    node: String(o.node),
    namespace: o.namespace,
    labels: o.labels,
    ports,
  });
  process.stdout.write(`pod ${p.namespace}/${p.name} on ${p.node}: ${p.ip} (netns ${p.netns})\n`);
  return 0;
}

async function node(name: string, args: string[], t: LabTools, o: LabOptions): Promise<number> {
  const { labNodeAdd, labNodeRemove } = await import("../net/lab/changes.ts");
  const [verb, nodeName, ...extra] = args;
  if (verb === "add" && nodeName === undefined) {
    const n = await labNodeAdd(name, t, { password: await labPassword(o) });
    if (n.refused) {
      process.stdout.write(
        `node ${n.name} added (${n.ip}) with a password other than the lab's: its agent (pid ${n.agentPid}) ` +
          `is refused by the mesh (see ${n.dataDir}/agent.log)\n`,
      );
      return 1;
    }
    process.stdout.write(`node ${n.name} added (${n.ip}), its agent ready (pid ${n.agentPid})\n`);
    return 0;
  }
  if (verb === "remove" && nodeName !== undefined && !extra.length) {
    const n = await labNodeRemove(name, nodeName);
    process.stdout.write(`node ${n.name} removed; its address space goes to the ring's heir\n`);
    return 0;
  }
  throw new WeaveError("E_USAGE", `usage: weave lab ${USAGE.node}`);
}

/**
 * `weave lab password set`: the lab's password file becomes what is given (set: one
 * password, or two while rotating), its agents restarted one at a time; `rotate`: the
 * whole sequence from the lab's password to the given one (net/lab/password.ts).
 */
async function password(name: string, args: string[], t: LabTools, o: LabOptions): Promise<number> {
  const [verb, ...extra] = args;
  if ((verb !== "set" && verb !== "rotate") || extra.length)
    throw new WeaveError("E_USAGE", `usage: weave lab ${USAGE.password}`);
  const content = await labPassword(o);
  if (!content)
    throw new WeaveError(
      "E_USAGE",
      `lab password ${verb}: give the password in a file (--password-file) or WEAVE_PASSWORD`,
    );
  const { labPasswordRotate, labPasswordSet } = await import("../net/lab/password.ts");
  try {
    if (verb === "set") {
      const n = await labPasswordSet(name, t, content);
      process.stdout.write(`lab ${name}: password file rewritten, ${n.length} agent(s) restarted one at a time\n`);
    } else {
      await labPasswordRotate(name, t, content);
      process.stdout.write(`lab ${name}: password rotated; every agent holds only the new one\n`);
    }
  } finally {
    content.fill(0);
  }
  return 0;
}
