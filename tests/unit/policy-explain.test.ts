/**
 * `weave policy explain`: the explanation agrees with the reference evaluator on every
 * case of the checklist (tests/support/policy-cases.ts) and its findings are consistent
 * with its verdict; the reasons name the isolating policies, the allowing rule, named
 * ports resolved on the destination pod and ipBlock matches; bad input is refused naming
 * the flag and value; and the command's exit codes (0 allowed, 1 denied, 2 could not
 * decide) against the lab's API server holding the x/y/z model as API objects.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { V1Pod } from "@kubernetes/client-node";
import { run } from "../../commands/policy.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";
import { type Endpoint, verdict } from "../../net/policy/evaluate.ts";
import { explain, type SideFinding } from "../../net/policy/explain.ts";
import { ExplainInputError, parsePort, resolveEndpoint, resolvePort } from "../../net/policy/explain-input.ts";
import { explanationText } from "../../net/policy/explain-text.ts";
import type { Protocol } from "../../net/policy/model.ts";
import type { PolicyView } from "../../net/policy/state.ts";
import { CASES } from "../support/policy-cases.ts";
import { cluster, modelPods, netpol, OUTSIDE, pod } from "../support/policy-fixture.ts";

const endpoint = (s: ReturnType<typeof cluster>, id: string): Endpoint =>
  id.includes("/") ? { pod: pod(s, id) } : { ip: id };

const consistent = (side: SideFinding) => {
  if (side.notPoliced || !side.isolatedBy.length) return side.allowed;
  const first = side.policies.flatMap((p) =>
    p.rules.filter((r) => r.allows).map((r) => ({ policy: p.policy, rule: r.rule })),
  )[0];
  expect(side.allowedBy).toEqual(first);
  return first !== undefined;
};

describe("explanations agree with the evaluator", () => {
  for (const c of CASES)
    test(c.name, () => {
      const s = cluster(...c.policies);
      for (const [from, to, port] of c.expect) {
        const [number, protocol] = port.split("/") as [string, Protocol];
        const a = endpoint(s, from);
        const b = endpoint(s, to);
        const e = explain(s, a, b, Number(number), protocol);
        const v = verdict(s, a, b, Number(number), protocol);
        expect({ from, to, port, allowed: e.allowed }).toEqual({ from, to, port, allowed: v.allowed });
        expect(e.reason).toBe(v.reason);
        expect(consistent(e.egress) && consistent(e.ingress)).toBe(e.allowed);
      }
    });
});

describe("reasons", () => {
  const s = cluster(
    netpol("y", "deny", { podSelector: {} }),
    netpol("y", "from-a", {
      podSelector: { matchLabels: { pod: "b" } },
      ingress: [
        {
          _from: [{ namespaceSelector: { matchLabels: { ns: "x" } }, podSelector: { matchLabels: { pod: "a" } } }],
          ports: [{ port: "serve-80-tcp" as never }],
        },
      ],
    }),
    netpol("x", "out", {
      podSelector: { matchLabels: { pod: "a" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ ipBlock: { cidr: "10.32.0.0/16", except: ["10.32.2.0/24"] } }] }],
    }),
  );
  test("an allowed pair names the allowing rule, the named port resolved on the destination and the ipBlock", () => {
    const e = explain(s, { pod: pod(s, "x/a") }, { pod: pod(s, "y/b") }, 80, "TCP");
    expect(e.allowed).toBe(true);
    expect(e.ingress.isolatedBy).toEqual(["y/deny", "y/from-a"]);
    expect(e.ingress.allowedBy).toEqual({ policy: "y/from-a", rule: 0 });
    const text = explanationText(e);
    expect(text).toStartWith("x/a -> y/b 80/TCP: ALLOWED\n");
    expect(text).toContain("y/deny: no ingress rules, so it allows nothing");
    expect(text).toContain("peer: from[0] (pods pod=a of namespaces ns=x) names x/a");
    expect(text).toContain("port: 80/TCP is in serve-80-tcp/TCP (= 80/TCP on y/b)");
    expect(text).toContain("peer: to[0] ipBlock 10.32.0.0/16 except 10.32.2.0/24 holds 10.32.1.11");
    expect(text).toContain("=> allowed by y/from-a rule 0");
  });
  test("a denied pair says which peer and port did not fit; an except names itself", () => {
    const e = explain(s, { pod: pod(s, "x/b") }, { pod: pod(s, "y/b") }, 81, "TCP");
    expect(e.allowed).toBe(false);
    const text = explanationText(e);
    expect(text).toStartWith("x/b -> y/b 81/TCP: DENIED\n");
    expect(text).toContain("egress of x/b: not isolated");
    expect(text).toContain("peer: no peer names x/b: from[0] (pods pod=a of namespaces ns=x)");
    expect(text).toContain("port: 81/TCP is not in serve-80-tcp/TCP (= 80/TCP on y/b)");
    expect(text).toContain("=> no rule of them allows this peer and port");
    const toZ = explanationText(explain(s, { pod: pod(s, "x/a") }, { pod: pod(s, "z/a") }, 80, "TCP"));
    expect(toZ).toContain("10.32.2.10 is in its except 10.32.2.0/24");
  });
  test("a node and its own pod: never policed", () => {
    const xa = pod(s, "x/a");
    const e = explain(s, { ip: "198.18.0.11", node: xa.node }, { pod: xa }, 80, "TCP");
    expect(e.allowed).toBe(true);
    expect(explanationText(e)).toContain("not policed: traffic between a node and its own pods is never policed");
  });
});

describe("input", () => {
  const s = cluster(netpol("y", "deny", { podSelector: {} }));
  const view: PolicyView = {
    state: s,
    skipped: new Map([["x/done", "it is Succeeded: its address may already be another pod's"]]),
    refused: [],
    nodes: [{ name: "n1", addresses: ["198.18.0.11"] }],
  };
  const refused = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(ExplainInputError);
      return (e as Error).message;
    }
    throw new Error("not refused");
  };
  test("ports: numbers, protocols, names", () => {
    expect(parsePort("80/TCP")).toEqual({ number: 80, protocol: "TCP" });
    expect(parsePort("53/udp")).toEqual({ number: 53, protocol: "UDP" });
    expect(parsePort("8080")).toEqual({ number: 8080, protocol: "TCP" });
    expect(parsePort("serve-81-udp")).toEqual({ name: "serve-81-udp" });
    expect(refused(() => parsePort("0/TCP"))).toBe('--port "0/TCP" is not a port from 1 to 65535');
    expect(refused(() => parsePort("80/ICMP"))).toBe('--port "80/ICMP" has protocol "ICMP": not TCP, UDP or SCTP');
    expect(refused(() => parsePort("Web!"))).toContain('--port "Web!" is neither');
    expect(refused(() => parsePort(undefined))).toContain("--port");
  });
  test("a named --port resolves on the destination pod, or is refused", () => {
    const yb = { pod: pod(s, "y/b") };
    expect(resolvePort(parsePort("serve-81-udp"), yb, "serve-81-udp")).toEqual({ port: 81, protocol: "UDP" });
    expect(refused(() => resolvePort(parsePort("http"), yb, "http"))).toStartWith(
      '--port "http" y/b has no container port named http (it has: serve-80-tcp 80/TCP',
    );
    expect(refused(() => resolvePort(parsePort("http"), { ip: OUTSIDE }, "http"))).toContain("is no pod");
  });
  test("endpoints: pods, their addresses, node addresses, outside; missing pods named", () => {
    expect(resolveEndpoint(view, "--from", "x/a")).toEqual({ pod: pod(s, "x/a") });
    expect(resolveEndpoint(view, "--to", "10.32.1.11")).toEqual({ pod: pod(s, "y/b") });
    expect(resolveEndpoint(view, "--from", "198.18.0.11")).toEqual({ ip: "198.18.0.11", node: "n1" });
    expect(resolveEndpoint(view, "--to", OUTSIDE)).toEqual({ ip: OUTSIDE });
    expect(refused(() => resolveEndpoint(view, "--to", "x/nope"))).toBe(
      '--to "x/nope" names no pod: the API has no pod nope in namespace x',
    );
    expect(refused(() => resolveEndpoint(view, "--from", "w/a"))).toBe(
      '--from "w/a" names no pod: the API has no namespace w',
    );
    expect(refused(() => resolveEndpoint(view, "--from", "x/done"))).toContain("does not police: it is Succeeded");
    expect(refused(() => resolveEndpoint(view, "--from", "a.b.c"))).toContain("is not NAMESPACE/POD");
  });
});

describe("weave policy explain against an API server", () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await startApiServer();
    for (const ns of ["x", "y", "z"])
      api.store.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: { ns } } });
    for (const p of modelPods()) {
      const containers = [
        {
          name: "c",
          image: "agnhost",
          ports: p.ports.map((x) => ({ name: x.name, containerPort: x.port, protocol: x.protocol })),
        },
      ];
      const apiPod: V1Pod = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
        spec: { nodeName: p.node, containers },
        status: { phase: "Running", podIP: p.ips[0], podIPs: [{ ip: p.ips[0]! }] },
      };
      api.store.put(apiPod);
    }
    api.store.put(netpol("y", "deny", { podSelector: {} }));
    api.store.put(
      netpol("y", "from-x", {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "x" } } }] }],
      } as never),
    );
  });
  afterAll(async () => {
    await api.stop();
  });
  const explainCli = async (args: { from?: string; to?: string; port?: string; output?: string }) => {
    const outs: string[] = [];
    const errs: string[] = [];
    const code = await run(
      "explain",
      { kubeconfig: api.kubeconfigPath, ...args },
      { out: (t) => void outs.push(t), err: (t) => void errs.push(t) },
    );
    return { code, out: outs.join(""), err: errs.join("") };
  };
  test("allowed: exit 0; denied: exit 1; -o json says the same", async () => {
    const ok = await explainCli({ from: "x/a", to: "y/b", port: "80/TCP" });
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("=> allowed by y/from-x rule 0");
    const no = await explainCli({ from: "z/a", to: "y/b", port: "80/TCP", output: "json" });
    expect(no.code).toBe(1);
    const doc = JSON.parse(no.out);
    expect(doc).toMatchObject({
      allowed: false,
      port: 80,
      protocol: "TCP",
      ingress: { isolatedBy: ["y/deny", "y/from-x"] },
    });
  });
  test("could not decide: exit 2 with the value named", async () => {
    const missing = await explainCli({ from: "x/zz", to: "y/b", port: "80/TCP" });
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('--from "x/zz" names no pod');
    const badPort = await explainCli({ from: "x/a", to: "y/b", port: "99999/TCP" });
    expect(badPort.code).toBe(2);
    expect(badPort.err).toContain('--port "99999/TCP" is not a port from 1 to 65535');
    const noApi = await run(
      "explain",
      { kubeconfig: "/nonexistent/kubeconfig", from: "x/a", to: "y/b", port: "80" },
      { out: () => {}, err: () => {} },
    );
    expect(noApi).toBe(2);
  });
});
