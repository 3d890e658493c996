/**
 * Upstream's ValidateOrFail on the lab, plus the wait for enforcement a policy change
 * needs: probe the whole matrix until it equals the model's (a controller takes a moment
 * to apply a change) or a bound passes; then re-probe once more, as upstream does on any
 * mismatch, and fail with "Had N wrong results", the expected, observed and comparison
 * tables, and how each wrong probe ended (a timeout is a drop; "refused" means nothing
 * listened or a reject, which points at the harness or at a reject rule).
 *
 * `runCase` plays one case: it first checks that the lab is back at the all-allowed start
 * (so a case cannot pass on what the previous one left enforced), then each step's
 * actions and validation, and resets the lab whatever happened.
 */
import type { Case, Probe } from "./scenario.ts";
import { initialCluster, modelReachability, probeName } from "./scenario.ts";
import type { NetpolLab } from "./netpol-lab.ts";
import type { ProbeResult } from "./pod-agent.ts";
import type { Reachability } from "./truth-table.ts";

export const ENFORCEMENT_BOUND_MS = 10_000;

/** What the validations saw, for the suite's closing line. */
export const stats = { validations: 0, firstTry: 0, slowestMs: 0, slowest: "" };

export async function validateOrFail(lab: NetpolLab, probe: Probe, r: Reachability, what: string): Promise<void> {
  const started = Date.now();
  const observeOnce = async () => {
    const seen = await lab.observe(probe);
    for (const [from, row] of seen) for (const [to, result] of row) r.observed.set(from, to, result === "ok");
    return seen;
  };
  const run = () => (probe.via === "service" ? lab.withServiceDnat(observeOnce) : observeOnce());
  let seen = await run();
  let tries = 1;
  while (r.wrong().length && Date.now() - started < ENFORCEMENT_BOUND_MS) {
    await Bun.sleep(200);
    seen = await run();
    tries++;
  }
  if (r.wrong().length) {
    seen = await run(); // upstream's second try
    tries++;
  }
  const wrong = r.wrong();
  stats.validations++;
  if (tries === 1) stats.firstTry++;
  const took = Date.now() - started;
  if (took > stats.slowestMs) Object.assign(stats, { slowestMs: took, slowest: `${what} (${probeName(probe)})` });
  if (!wrong.length) return;
  const shown = wrong.slice(0, 20);
  const more = wrong.length > shown.length ? [`  ... and ${wrong.length - shown.length} more`] : [];
  const outcomes = shown.map(
    (w) =>
      `  ${w.from} -> ${w.to}: expected ${w.expected ? "allowed" : "denied"}, probe ${outcome(seen, w.from, w.to)}`,
  );
  const head = `${what}: Had ${wrong.length} wrong results in reachability matrix (${probeName(probe)}, ${tries} probes over ${took} ms)`;
  throw new Error(`${head}\n\n${r.summary()}\n\nwrong probes:\n${[...outcomes, ...more].join("\n")}`);
}

function outcome(seen: Map<string, Map<string, ProbeResult>>, from: string, to: string): ProbeResult | undefined {
  return seen.get(from)?.get(to);
}

/** The all-allowed start every case begins from, checked on TCP 80. */
export async function expectBaseline(lab: NetpolLab, what: string): Promise<void> {
  const start = initialCluster((k) => lab.ip(k));
  const probe: Probe = { port: 80, protocol: "TCP" };
  await validateOrFail(lab, probe, modelReachability(start, probe), `${what}: the start (no policies)`);
}

export async function runCase(lab: NetpolLab, c: Case): Promise<void> {
  await expectBaseline(lab, c.name);
  try {
    for (const [i, s] of c.steps.entries()) {
      for (const a of s.actions) await lab.apply(a);
      await validateOrFail(lab, s.probe, modelReachability(lab.model, s.probe), `step ${i + 1} of "${c.name}"`);
    }
  } finally {
    await lab.reset();
  }
}
