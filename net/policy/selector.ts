/**
 * Label selectors (metav1.LabelSelector) as NetworkPolicy uses them: matchLabels and
 * matchExpressions are ANDed; an empty selector ({}) matches everything; an absent one
 * (null/undefined) matches nothing where the API says so (a peer without a
 * namespaceSelector is not "all namespaces": the caller decides what absence means).
 * A selector the API would refuse (unknown operator, values where none belong) is a
 * PolicyError naming the field, so a bad object never silently opens or closes traffic.
 */
import type { V1LabelSelector } from "@kubernetes/client-node";

export type Labels = Readonly<Record<string, string>>;

/** A policy the API should have refused; `field` is its path, like spec.ingress[0].from[1].podSelector. */
export class PolicyError extends Error {
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`${field} ${JSON.stringify(value)} ${reason}`);
    this.name = "PolicyError";
  }
}

const OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"] as const;

/** Throws a PolicyError when `s` is not a selector the API accepts. */
export function checkSelector(s: V1LabelSelector, field: string): void {
  for (const [key, value] of Object.entries(s.matchLabels ?? {}))
    if (typeof value !== "string") throw new PolicyError(`${field}.matchLabels.${key}`, value, "is not a string");
  (s.matchExpressions ?? []).forEach((e, i) => {
    const at = `${field}.matchExpressions[${i}]`;
    if (!(OPERATORS as readonly string[]).includes(e.operator))
      throw new PolicyError(`${at}.operator`, e.operator, `is not one of ${OPERATORS.join(", ")}`);
    const values = e.values ?? [];
    const needsValues = e.operator === "In" || e.operator === "NotIn";
    if (needsValues && values.length === 0)
      throw new PolicyError(`${at}.values`, values, `must be non-empty for operator ${e.operator}`);
    if (!needsValues && values.length > 0)
      throw new PolicyError(`${at}.values`, values, `must be empty for operator ${e.operator}`);
  });
}

/** Whether `labels` satisfy `s`; an empty selector matches all labels. */
export function matches(s: V1LabelSelector, labels: Labels): boolean {
  for (const [key, value] of Object.entries(s.matchLabels ?? {})) if (labels[key] !== value) return false;
  for (const e of s.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    const ok =
      e.operator === "In"
        ? inValues
        : e.operator === "NotIn"
          ? !inValues
          : e.operator === "Exists"
            ? has
            : e.operator === "DoesNotExist"
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

/** A canonical text of a selector: equal selectors (in any key order) give equal text. */
export function selectorKey(s: V1LabelSelector): string {
  const labels = Object.entries(s.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const expressions = (s.matchExpressions ?? [])
    .map((e) => `${e.key} ${e.operator} (${[...(e.values ?? [])].sort().join(",")})`)
    .sort();
  return JSON.stringify([labels, expressions]);
}
