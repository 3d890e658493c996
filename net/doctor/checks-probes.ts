/**
 * The checks of cluster mode's in-pod probes (pure): what gather/probe-pods.ts saw in
 * the probe pods becomes probe-pods, probe-ping, probe-service and probe-dns.
 */
import { oneLine } from "./parse.ts";
import { blame, list, plural, result } from "./result.ts";
import type { CheckResult } from "./types.ts";

export const PROBE_LABEL = "app.kubernetes.io/name";
export const PROBE_APP = "weave-doctor-probe";

export type ProbePod = { node: string; name: string; ip?: string; phase?: string; reason?: string; error?: string };
export type PodProbe = {
  kind: "ping" | "service" | "dns";
  from: string;
  to: string;
  target: string;
  ok: boolean;
  output: string;
};
export type ProbeFacts = {
  namespace: string;
  image: string;
  timeoutMs: number;
  pods: ProbePod[];
  probes: PodProbe[];
  /** Why probing stopped early (namespace or pods could not be made, ...). */
  error?: string;
  /** Why the service probe was not run. */
  serviceSkipped?: string;
  /** Why the DNS probe was not run. */
  dnsSkipped?: string;
  /** What could not be removed afterwards. */
  cleanup: string[];
};

const describePod = (ns: string, p: ProbePod) =>
  `kubectl -n ${ns} describe pod ${p.name} (gone now: doctor removes its probes; run doctor again and describe it meanwhile)`;

/** The checks of the probes: probe-pods, probe-ping (per blamed node), probe-service and probe-dns (per node). */
export function checkProbes(f: ProbeFacts): CheckResult[] {
  const out: CheckResult[] = [];
  if (f.error && !f.pods.length)
    return [
      result(
        "probe-pods",
        "warn",
        undefined,
        `in-pod probes not run: ${f.error}`,
        `let doctor create pods in ${f.namespace} and use pods/exec (RBAC), or check by hand from a pod on each node`,
      ),
    ];
  if (!f.error && !f.pods.length)
    return [
      result(
        "probe-pods",
        "warn",
        undefined,
        "in-pod probes not run: no Ready node to start a probe pod on",
        "see node-ready",
      ),
    ];
  if (f.error)
    out.push(
      result(
        "probe-pods",
        "warn",
        undefined,
        `in-pod probes stopped early: ${f.error}`,
        "run doctor again; if it repeats, look at the API server's answer above",
      ),
    );
  for (const p of f.pods) {
    if (p.error)
      out.push(
        result(
          "probe-pods",
          "warn",
          p.node,
          `probe pod ${p.name} ${p.error}`,
          `let doctor create pods in ${f.namespace} (RBAC, quotas, admission)`,
        ),
      );
    else if (!p.ip && /ErrImagePull|ImagePullBackOff|InvalidImageName/.test(p.reason ?? ""))
      out.push(
        result(
          "probe-pods",
          "warn",
          p.node,
          `probe pod ${p.name} not Running after ${f.timeoutMs / 1000} s: ${p.reason}`,
          `the node cannot pull ${f.image}: pick an image it can pull (busybox-like, with ping, nc and nslookup)`,
        ),
      );
    else if (!p.ip)
      out.push(
        result(
          "probe-pods",
          "fail",
          p.node,
          `probe pod ${p.name} not Running with an address after ${f.timeoutMs / 1000} s: ${p.reason ?? "no status"}`,
          `a pod that gets no address means CNI ADD fails on this node: see agent-pods for it, and ${describePod(f.namespace, p)}`,
        ),
      );
  }
  const up = f.pods.filter((p) => p.ip);
  if (up.length && up.length === f.pods.length)
    out.push(
      result(
        "probe-pods",
        "pass",
        undefined,
        `${plural(up.length, "probe pod")} (${f.image}) Running in ${f.namespace} with addresses: ${list(up.map((p) => `${p.node} ${p.ip}`))}`,
      ),
    );
  for (const c of f.cleanup)
    out.push(
      result(
        "probe-pods",
        "warn",
        undefined,
        `could not remove ${c}`,
        `delete it by hand: kubectl delete pods -A -l ${PROBE_LABEL}=${PROBE_APP}`,
      ),
    );

  const pings = f.probes.filter((p) => p.kind === "ping");
  const failed = pings.filter((p) => !p.ok);
  const pair = (p: PodProbe) => `${p.from}→${p.to} (${p.target}): ${oneLine(p.output, 80) || "no output"}`;
  for (const g of blame(failed)) {
    const evidence = g.node
      ? `pings between probe pods fail for every pair involving ${g.node}: ${list(g.pairs.map(pair), 4)}`
      : `pings between probe pods fail: ${list(g.pairs.map(pair), 4)}`;
    const fix =
      "pods cannot reach each other across nodes: " +
      "check that TCP 6783 and UDP 6784 pass between the nodes (a firewall is the classic cause) " +
      `with weave doctor --node on ${g.node ?? "each node"}`;
    out.push(result("probe-ping", "fail", g.node, evidence, fix));
  }
  if (pings.length && !failed.length)
    out.push(
      result(
        "probe-ping",
        "pass",
        undefined,
        `${plural(pings.length, "ping")} between probe pods on ${plural(up.length, "node")} went through`,
      ),
    );
  if (up.length === 1)
    out.push(
      result(
        "probe-ping",
        "warn",
        undefined,
        "only one probe pod ran: no pair of nodes to ping between",
        "run doctor again once more nodes are Ready",
      ),
    );

  const perNode = (kind: "service" | "dns", name: string, what: string, fix: string) => {
    const ps = f.probes.filter((p) => p.kind === kind);
    for (const p of ps.filter((x) => !x.ok))
      out.push(
        result(
          name,
          "fail",
          p.from,
          `${what} ${p.target} failed from the probe pod on ${p.from}: ${oneLine(p.output) || "no output"}`,
          fix,
        ),
      );
    if (ps.length && ps.every((p) => p.ok))
      out.push(
        result(
          name,
          "pass",
          undefined,
          `${what} ${ps[0]!.target} works from probe pods on ${plural(ps.length, "node")}`,
        ),
      );
  };
  if (f.serviceSkipped && up.length)
    out.push(
      result(
        "probe-service",
        "warn",
        undefined,
        `not probed: ${f.serviceSkipped}`,
        "check kube-apiserver and the default/kubernetes Service",
      ),
    );
  const serviceFix =
    "pods cannot reach Services: check kube-proxy on this node (its logs, its iptables/ipvs rules) " +
    "and that the pod range does not overlap the service range (range-overlap)";
  perNode("service", "probe-service", "reaching the kubernetes Service at", serviceFix);
  if (f.dnsSkipped && up.length)
    out.push(
      result("probe-dns", "warn", undefined, `not probed: ${f.dnsSkipped}`, "check cluster DNS in a real cluster"),
    );
  const dnsFix =
    "cluster DNS fails from pods: check the CoreDNS pods (kubectl -n kube-system get pods -l k8s-app=kube-dns) " +
    "and that this node reaches the kube-dns Service (probe-service, probe-ping)";
  perNode("dns", "probe-dns", "resolving", dnsFix);
  return out;
}
