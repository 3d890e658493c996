/**
 * An Explanation (explain.ts) as the lines `weave policy explain` prints: the verdict
 * first, the two ends, then each direction with the policies that isolate it and every
 * rule of theirs with what its peers and ports say, and last the evaluator's reason,
 * the same sentence the controller writes when it drops such a connection.
 */
import type { EndpointView, Explanation, SideFinding } from "./explain.ts";

export function explanationText(e: Explanation): string {
  const portName = e.portName ? ` (${e.portName})` : "";
  const head = `${e.from.name} -> ${e.to.name} ${e.port}/${e.protocol}${portName}: ${e.allowed ? "ALLOWED" : "DENIED"}`;
  const lines = [head, "", endLine("from", e.from), endLine("to", e.to), ""];
  lines.push(...sideLines(e.egress, e.from.name), ...sideLines(e.ingress, e.to.name));
  lines.push("", `reason: ${e.reason}`);
  return `${lines.join("\n")}\n`;
}

function endLine(label: string, v: EndpointView): string {
  const ip = v.ip && v.ip !== v.name ? `  ${v.ip}` : "";
  const node = v.node && v.pod ? `  on ${v.node}` : "";
  const note = v.note ? `  (${v.note})` : "";
  return `  ${label.padEnd(5)} ${v.name}${ip}${node}${note}`;
}

function sideLines(s: SideFinding, who: string): string[] {
  const title = `${s.direction} of ${who}`;
  if (s.notPoliced) return [`${title}: not policed: ${s.notPoliced}`];
  if (!s.isolatedBy.length) {
    const type = s.direction === "egress" ? "Egress" : "Ingress";
    return [`${title}: not isolated: no policy selects it with ${type} in its policyTypes`];
  }
  const out = [`${title}: isolated by ${s.isolatedBy.join(", ")}`];
  for (const p of s.policies) {
    if (!p.rules.length) {
      out.push(`  ${p.policy}: no ${s.direction} rules, so it allows nothing`);
      continue;
    }
    for (const r of p.rules) {
      out.push(`  ${p.policy} rule ${r.rule}: ${r.allows ? "allows" : "does not allow"}`);
      out.push(`      peer: ${r.peers}`, `      port: ${r.ports}`);
    }
  }
  const verdict = s.allowedBy
    ? `allowed by ${s.allowedBy.policy} rule ${s.allowedBy.rule}`
    : "no rule of them allows this peer and port";
  out.push(`  => ${verdict}`);
  return out;
}
