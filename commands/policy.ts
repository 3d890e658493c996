/**
 * `weave policy explain --from NS/POD --to NS/POD|IP --port 80/TCP [-o json]`: would a
 * new connection be allowed by the cluster's NetworkPolicies, and why. It reads the
 * policies, pods, namespaces and nodes from the API (--kubeconfig, --context, else as
 * kubectl: $KUBECONFIG, ~/.kube/config, in-cluster) and asks the reference evaluator,
 * the one the controller's drop lines come from; no traffic is sent.
 *
 * Exit codes: 0 allowed, 1 denied, 2 could not decide (a pod that does not exist or is
 * not policed, a bad port or flag, an API that cannot be read), with the error on stderr.
 */
import { WeaveError } from "../net/errors.ts";
import { loadKubeConfig } from "../net/k8s/client.ts";
import { readPolicyView } from "../net/k8s/policy-state.ts";
import { explain } from "../net/policy/explain.ts";
import { ExplainInputError, parsePort, resolveEndpoint, resolvePort } from "../net/policy/explain-input.ts";
import { explanationText } from "../net/policy/explain-text.ts";
import type { PolicyView } from "../net/policy/state.ts";

export type PolicyOptions = {
  from?: string;
  to?: string;
  port?: string | number;
  kubeconfig?: string;
  context?: string;
  output?: string;
};

export type PolicyIO = { out(text: string): void; err(text: string): void };

const stdio: PolicyIO = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

/** The answer for a view of the cluster (pure; the command reads the view first). */
export function explainIn(view: PolicyView, o: PolicyOptions) {
  // cac turns a bare number into a number
  const portText = o.port === undefined ? undefined : String(o.port);
  const spec = parsePort(portText);
  const from = resolveEndpoint(view, "--from", o.from);
  const to = resolveEndpoint(view, "--to", o.to);
  const { port, protocol } = resolvePort(spec, to, portText!);
  return explain(view.state, from, to, port, protocol, spec.name);
}

export async function run(action: string, o: PolicyOptions, io: PolicyIO = stdio): Promise<number> {
  const fail = (message: string) => {
    io.err(`weave policy ${action}: ${message}\n`);
    return 2;
  };
  if (action !== "explain") return fail(`unknown action "${action}" (explain) [E_USAGE]`);
  if (o.output !== undefined && o.output !== "json") return fail(`-o "${o.output}" is not a format (json) [E_USAGE]`);
  try {
    parsePort(o.port === undefined ? undefined : String(o.port));
    const kc = loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context });
    const view = await readPolicyView(kc);
    const answer = explainIn(view, o);
    const refused = view.refused.filter((r) =>
      [answer.egress, answer.ingress].some((s) => s.isolatedBy.includes(r.policy)),
    );
    for (const r of refused)
      io.err(
        `note: policy ${r.policy} is one the API should have refused (${r.error}); it isolates and allows nothing\n`,
      );
    if (o.output === "json") io.out(`${JSON.stringify({ ...answer, refusedPolicies: refused }, null, 2)}\n`);
    else io.out(explanationText(answer));
    return answer.allowed ? 0 : 1;
  } catch (e) {
    if (e instanceof ExplainInputError) return fail(`${e.message} [E_USAGE]`);
    if (e instanceof WeaveError) return fail(`${e.message} [${e.code}]`);
    throw e;
  }
}
