/**
 * The cluster of upstream's netpol model and the steps of a case, as data that both the
 * model and the lab run: namespaces x, y, z; pods a, b, c in each, labelled pod=<name>,
 * declaring the named ports serve-<port>-<proto>. A case is a list of steps; a step is some
 * actions (create, update or delete policies; add labels to a namespace or a pod), then
 * one probe (a port and protocol, to pod addresses or through Service addresses) with
 * upstream's expectation for it, written with upstream's truth-table edits.
 *
 * The e2e test applies the actions to the lab's API and to a ModelCluster side by side;
 * the model's verdicts are the Expected table, and the unit test checks that they equal
 * upstream's hand-written expectation for every step of every case.
 */
import type { Labels, ModelCluster, ModelPod, NetworkPolicy, Protocol } from "./model.ts";
import { allowed } from "./model.ts";
import { type PodKey, Reachability } from "./truth-table.ts";

export const NAMESPACES = ["x", "y", "z"] as const;
export const POD_NAMES = ["a", "b", "c"] as const;
export const POD_KEYS: PodKey[] = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}` as PodKey));
export const SERVE_PORTS = [80, 81] as const;
export const SERVE_PROTOCOLS: Protocol[] = ["TCP", "UDP"];

/** The container ports every model pod declares (no SCTP: see the e2e file's note). */
export const NAMED_PORTS = SERVE_PORTS.flatMap((port) =>
  SERVE_PROTOCOLS.map((protocol) => ({
    name: `serve-${port}-${protocol.toLowerCase()}`,
    containerPort: port,
    protocol,
  })),
);

export type Probe = { port: number; protocol: Protocol; via?: "pod-ip" | "service" };

export type Action =
  | { kind: "create-policy"; policy: NetworkPolicy }
  | { kind: "update-policy"; policy: NetworkPolicy }
  | { kind: "delete-policies" }
  | { kind: "add-namespace-labels"; namespace: string; labels: Labels }
  | { kind: "add-pod-labels"; pod: PodKey; labels: Labels };

export type Step = { actions: Action[]; probe: Probe; upstream: (r: Reachability) => void };
export type Case = { name: string; steps: Step[]; ours?: boolean };
export type Group = { name: string; cases: Case[] };

/** The model cluster before any case: no policies, the original labels. */
export function initialCluster(ip: (pod: PodKey) => string): ModelCluster {
  const pods: ModelPod[] = POD_KEYS.map((key) => {
    const [namespace, name] = key.split("/") as [string, string];
    return { namespace, name, labels: { pod: name }, ip: ip(key), ports: NAMED_PORTS };
  });
  return { namespaces: NAMESPACES.map((name) => ({ name, labels: {} })), pods, policies: [] };
}

/** The model after `a` (a new value; the input is left alone). */
export function applyToModel(c: ModelCluster, a: Action): ModelCluster {
  const sameName = (p: NetworkPolicy, q: NetworkPolicy) =>
    p.metadata.namespace === q.metadata.namespace && p.metadata.name === q.metadata.name;
  switch (a.kind) {
    case "create-policy":
      if (c.policies.some((p) => sameName(p, a.policy))) throw new Error(`policy ${a.policy.metadata.name} exists`);
      return { ...c, policies: [...c.policies, a.policy] };
    case "update-policy":
      return { ...c, policies: c.policies.map((p) => (sameName(p, a.policy) ? a.policy : p)) };
    case "delete-policies":
      return { ...c, policies: [] };
    case "add-namespace-labels":
      return {
        ...c,
        namespaces: c.namespaces.map((n) =>
          n.name === a.namespace ? { ...n, labels: { ...n.labels, ...a.labels } } : n,
        ),
      };
    case "add-pod-labels":
      return {
        ...c,
        pods: c.pods.map((p) =>
          `${p.namespace}/${p.name}` === a.pod ? { ...p, labels: { ...p.labels, ...a.labels } } : p,
        ),
      };
  }
}

/** Expected reachability from the model: every ordered pair, this probe's port and protocol. */
export function modelReachability(c: ModelCluster, probe: Probe): Reachability {
  const r = new Reachability(POD_KEYS);
  const pod = (k: PodKey) => c.pods.find((p) => `${p.namespace}/${p.name}` === k)!;
  for (const from of POD_KEYS)
    for (const to of POD_KEYS)
      r.expect(
        from,
        to,
        allowed(c, { client: pod(from), server: pod(to), port: probe.port, protocol: probe.protocol }),
      );
  return r;
}

/** Upstream's expectation for a step: all true, then the step's edits. */
export function upstreamReachability(step: Step): Reachability {
  const r = new Reachability(POD_KEYS);
  step.upstream(r);
  return r;
}

export const probeName = (p: Probe) => `${p.protocol}/${p.port}${p.via === "service" ? " via Service" : ""}`;
