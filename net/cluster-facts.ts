/**
 * What `weave install` and `weave doctor` both read off Kubernetes objects, as pure
 * functions of the objects (no client here: net/k8s/ talks to the API, net/doctor/ only
 * judges what was gathered).
 */
import type { V1Pod } from "@kubernetes/client-node";

/** The inferred service range is this prefix around the `kubernetes` ClusterIP (kubeadm's 10.96.0.0/12). */
export const INFERRED_SERVICE_PREFIX = 12;

/** What a pod that is not Ready is doing, from its container states (init containers first). */
export function podState(p: V1Pod): string {
  const name = p.metadata?.name;
  for (const [what, list] of [
    ["init container", p.status?.initContainerStatuses],
    ["container", p.status?.containerStatuses],
  ] as const) {
    for (const c of list ?? []) {
      const w = c.state?.waiting;
      const t = c.state?.terminated;
      const last = c.lastState?.terminated;
      const why = (s: { reason?: string; message?: string; exitCode?: number } | undefined) =>
        [s?.reason, s?.exitCode !== undefined ? `exit ${s.exitCode}` : undefined, s?.message?.trim().split("\n").at(-1)]
          .filter(Boolean)
          .join(", ");
      // a restart loop's own message ("back-off 20s ...") says less than how the last run ended
      if (w && w.reason !== "PodInitializing")
        return `pod ${name}: ${what} ${c.name} ${w.reason ?? "waiting"}${last ? ` (last run: ${why(last)})` : w.message ? ` (${w.message})` : ""}`;
      if (t && t.exitCode !== 0) return `pod ${name}: ${what} ${c.name} failed (${why(t)})`;
      if (what === "container" && c.state?.running && !c.ready)
        return `pod ${name}: agent running, not ready yet (GET /status answers 503 until it is)`;
    }
  }
  return `pod ${name}: ${p.status?.phase ?? "Pending"}`;
}
