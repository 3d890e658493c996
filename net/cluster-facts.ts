/**
 * What `weave install` and `weave doctor` both read off Kubernetes objects, as pure
 * functions of the objects (no client here: net/k8s/ talks to the API, net/doctor/ only
 * judges what was gathered).
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";

/** What a weave lab's nodes say they run (status.nodeInfo.containerRuntimeVersion): `weave-lab://<version>`. */
export const LAB_RUNTIME_PREFIX = "weave-lab://";

/**
 * A weave lab runs no kube-proxy and no cluster DNS: Service addresses lead nowhere in it
 * and names do not resolve. True when every node says it is a lab node.
 */
export function isLab(nodes: readonly V1Node[]): boolean {
  const runtime = (n: V1Node) => n.status?.nodeInfo?.containerRuntimeVersion ?? "";
  return nodes.length > 0 && nodes.every((n) => runtime(n).startsWith(LAB_RUNTIME_PREFIX));
}

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
