/**
 * `weave doctor [--lab [NAME] | --node] [-o json]`: the troubleshooting checklist
 * (docs/troubleshooting.md). Gathers facts (net/doctor/gather-*.ts), evaluates the
 * checks (net/doctor/evaluate.ts), prints progress to stderr and the table and a
 * summary line to stdout, or every result as JSON.
 *
 * Exit codes: 0 every check passed (warnings allowed), 1 some check failed, 2 doctor
 * could not run at all (no such lab, no kubeconfig, API server unreachable, bad flags).
 */
import pc from "picocolors";
import { readLab } from "../net/lab/state.ts";
import { WeaveError } from "../net/errors.ts";
import { hostExec } from "../net/doctor/gather/exec.ts";
import { evaluate, summarize } from "../net/doctor/evaluate.ts";
import { table } from "../net/doctor/format.ts";
import type { CheckResult } from "../net/doctor/types.ts";

export type DoctorOptions = {
  lab?: string | boolean;
  node?: boolean;
  kubeconfig?: string;
  context?: string;
  output?: string;
  probes?: boolean;
  probeImage?: string;
  probeNamespace?: string;
};

/** Where output goes (tests pass their own). */
export type DoctorIO = { out(text: string): void; err(text: string): void; color?: boolean; width?: number };

const stdio = (): DoctorIO => ({
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  color: pc.isColorSupported && !!process.stdout.isTTY,
  width: process.stdout.columns,
});

const cannotRun = (message: string) => new WeaveError("E_DOCTOR", message);

async function results(
  o: DoctorOptions,
  progress: (l: string) => void,
): Promise<{ mode: string; target: string; checks: CheckResult[] }> {
  const exec = hostExec();
  if (o.lab !== undefined && o.lab !== false) {
    const name = typeof o.lab === "string" && o.lab ? o.lab : "lab";
    const s = readLab(name);
    if (!s)
      throw cannotRun(
        `no lab named "${name}" (/run/weave-lab/${name}/lab.json not found); start one with: weave lab up --name ${name}`,
      );
    if (process.getuid?.() !== 0) throw cannotRun("doctor --lab enters the lab's namespaces and needs root");
    const { gatherLab } = await import("../net/doctor/gather/lab.ts");
    progress(`lab ${s.name}: ${s.nodes.length} node(s), ${s.pods.length} pod(s)`);
    const facts = await gatherLab(s, { exec, progress });
    return { mode: "lab", target: s.name, checks: evaluate(facts) };
  }
  if (o.node) {
    const { gatherNode } = await import("../net/doctor/gather/node.ts");
    const { DEFAULT_NPC_URL } = await import("../net/doctor/gather/npc.ts");
    const facts = await gatherNode({ exec, progress }, { npcUrl: DEFAULT_NPC_URL, kubeconfig: o.kubeconfig });
    return { mode: "node", target: facts.target, checks: evaluate(facts) };
  }
  const { loadKubeConfig } = await import("../net/k8s/client.ts");
  const { doctorCluster } = await import("../net/doctor/gather/cluster.ts");
  let kc: ReturnType<typeof loadKubeConfig>;
  try {
    kc = loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context });
  } catch (e) {
    throw cannotRun(`${(e as Error).message}; or check the lab (--lab) or this node (--node) instead`);
  }
  // cac turns --no-probes into probes: false; probing is the default.
  const probes = o.probes === false ? undefined : { image: o.probeImage, namespace: o.probeNamespace, progress };
  const r = await doctorCluster(kc, { progress, probes });
  return { mode: "cluster", target: r.target, checks: r.checks };
}

export async function run(o: DoctorOptions, io: DoctorIO = stdio()): Promise<number> {
  if (o.output !== undefined && o.output !== "json") {
    io.err(`weave doctor: -o ${o.output} is not a format doctor prints (json) [E_USAGE]\n`);
    return 2;
  }
  if (o.lab !== undefined && o.lab !== false && o.node) {
    io.err("weave doctor: --lab and --node name two different targets; pick one [E_USAGE]\n");
    return 2;
  }
  const paint = io.color ? pc : undefined;
  const dim = (s: string) => (paint ? paint.dim(s) : s);
  const started = Date.now();
  let r: Awaited<ReturnType<typeof results>>;
  try {
    r = await results(o, (l) => io.err(dim(`doctor: ${l}\n`)));
  } catch (e) {
    if (e instanceof WeaveError) {
      io.err(`weave doctor: ${e.message} [${e.code}]\n`);
      return 2;
    }
    throw e;
  }
  if (!r.checks.length) {
    io.err(`weave doctor: nothing could be checked on ${r.mode} ${r.target} [E_DOCTOR]\n`);
    return 2;
  }
  const s = summarize(r.checks);
  io.err(
    dim(
      `doctor: ${r.checks.length} results from ${s.checks} checks in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    ),
  );
  if (o.output === "json") {
    io.out(
      `${JSON.stringify(
        {
          mode: r.mode,
          target: r.target,
          summary: s.line,
          failed: s.failed,
          checks: r.checks.map((c) => ({
            name: c.name,
            status: c.status,
            node: c.node ?? null,
            evidence: c.evidence,
            fix: c.fix,
          })),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    io.out(`${table(r.checks, { width: io.width ?? 120, paint })}\n${s.line}\n`);
  }
  return s.exitCode;
}
