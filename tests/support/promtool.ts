/** `promtool check metrics` (Debian's prometheus) on an exposition, for the unit and e2e tests. */

/**
 * promtool's findings we accept on purpose: Weave Net's own name
 * weave_ipam_unreachable_count (its users' dashboards use it) ends in _count, which
 * promtool's lint reserves for histograms and summaries.
 */
export const KNOWN_LINT = [
  /^weave_ipam_unreachable_count non-histogram and non-summary metrics should not have "_count" suffix$/,
];

/**
 * What promtool finds wrong with `text`, less KNOWN_LINT. Exit code 3 means lint
 * findings only; any other failure (text it could not parse) is reported as one.
 */
export async function promtoolProblems(text: string, promtool = Bun.which("promtool")!): Promise<string[]> {
  const p = Bun.spawn([promtool, "check", "metrics"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  p.stdin.write(text);
  await p.stdin.end();
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  const problems = `${out}${err}`
    .split("\n")
    .filter(Boolean)
    .filter((l) => !KNOWN_LINT.some((k) => k.test(l)));
  if (code !== 0 && code !== 3) problems.push(`promtool exited ${code}`);
  return problems;
}
