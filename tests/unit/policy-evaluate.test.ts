/** The reference evaluator (net/policy/evaluate.ts) and the policy model against the API's semantics. */
import { describe, expect, test } from "bun:test";
import { type Endpoint, verdict } from "../../net/policy/evaluate.ts";
import { policyFromApi, policyFromApiOrClosed, podFromApi, type Protocol } from "../../net/policy/model.ts";
import { matches, PolicyError } from "../../net/policy/selector.ts";
import { CASES } from "../support/policy-cases.ts";
import { cluster, netpol, pod } from "../support/policy-fixture.ts";

const endpoint = (s: ReturnType<typeof cluster>, id: string): Endpoint =>
  id.includes("/") ? { pod: pod(s, id) } : { ip: id };

describe("verdicts of the checklist", () => {
  for (const c of CASES)
    test(c.name, () => {
      const s = cluster(...c.policies);
      for (const [from, to, port, allowed] of c.expect) {
        const [number, protocol] = port.split("/");
        const v = verdict(s, endpoint(s, from), endpoint(s, to), Number(number), protocol as Protocol);
        expect({ from, to, port, allowed: v.allowed }).toEqual({ from, to, port, allowed });
      }
    });
});

describe("reasons", () => {
  const s = cluster(
    netpol("x", "deny", { podSelector: {} }),
    netpol("x", "web", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: 81 as never }] }] }),
  );
  test("a drop names the isolating policies and says none allows", () => {
    const v = verdict(s, { pod: pod(s, "y/a") }, { pod: pod(s, "x/a") }, 80, "TCP");
    expect(v.allowed).toBe(false);
    expect(v.ingress.isolatedBy).toEqual(["x/deny", "x/web"]);
    expect(v.reason).toBe(
      "y/a -> x/a 80/TCP: dropped: ingress of x/a is isolated by x/deny, x/web and no rule of them allows this peer and port",
    );
  });
  test("an allow names the policy and rule", () => {
    const v = verdict(s, { pod: pod(s, "y/a") }, { pod: pod(s, "x/a") }, 81, "TCP");
    expect(v.ingress.allowedBy).toEqual({ policy: "x/web", rule: 0 });
    expect(v.reason).toContain("allowed by x/web rule 0");
  });
  test("traffic between a node and its own pods is always allowed; another node's is not", () => {
    const xa = pod(s, "x/a");
    expect(verdict(s, { ip: "198.18.0.11", node: xa.node }, { pod: xa }, 80, "TCP").allowed).toBe(true);
    expect(verdict(s, { ip: "198.18.0.12", node: "elsewhere" }, { pod: xa }, 80, "TCP").allowed).toBe(false);
  });
  test("hostNetwork pods are never selected: their traffic is their node's", () => {
    const host = { ...pod(s, "y/a"), name: "host", hostNetwork: true, node: "n9", ips: ["198.18.0.19"] };
    const allowY = cluster(
      netpol("x", "from-y", { podSelector: {}, ingress: [{ _from: [{ namespaceSelector: {} }] }] }),
    );
    expect(verdict(allowY, { pod: host }, { pod: pod(allowY, "x/a") }, 80, "TCP").allowed).toBe(false);
    expect(verdict(allowY, { pod: pod(allowY, "y/a") }, { pod: pod(allowY, "x/a") }, 80, "TCP").allowed).toBe(true);
  });
  test("a policy of another namespace isolates nothing here", () => {
    const other = cluster(netpol("y", "deny", { podSelector: {} }));
    expect(verdict(other, { pod: pod(other, "z/a") }, { pod: pod(other, "x/a") }, 80, "TCP").allowed).toBe(true);
  });
});

describe("selectors", () => {
  test("empty matches everything; matchLabels AND matchExpressions", () => {
    expect(matches({}, {})).toBe(true);
    const sel = { matchLabels: { a: "1" }, matchExpressions: [{ key: "b", operator: "NotIn", values: ["2"] }] };
    expect(matches(sel, { a: "1" })).toBe(true);
    expect(matches(sel, { a: "1", b: "2" })).toBe(false);
    expect(matches(sel, { a: "2" })).toBe(false);
  });
});

describe("the model: defaults and bad input", () => {
  const bad = (spec: object) => () => policyFromApi(netpol("x", "bad", spec as never));
  test("errors name the field and the value", () => {
    expect(bad({ podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP" }] }] })).toThrow(
      'spec.ingress[0].ports[0].protocol "ICMP" is not TCP, UDP or SCTP',
    );
    expect(bad({ podSelector: {}, ingress: [{ ports: [{ port: 90, endPort: 80 }] }] })).toThrow(
      "spec.ingress[0].ports[0].endPort 80 is not a port from 90 to 65535",
    );
    expect(
      bad({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["11.0.0.0/16"] } }] }] }),
    ).toThrow('spec.egress[0].to[0].ipBlock.except[0] "11.0.0.0/16" is not inside the cidr 10.0.0.0/8');
    expect(bad({ podSelector: { matchExpressions: [{ key: "a", operator: "Has" }] } })).toThrow(
      'spec.podSelector.matchExpressions[0].operator "Has" is not one of In, NotIn, Exists, DoesNotExist',
    );
    expect(bad({ podSelector: {}, ingress: [{ _from: [{}] }] })).toThrow(PolicyError);
  });
  test("an unreadable policy still isolates what it selects, allowing nothing", () => {
    const np = netpol("x", "bad", { podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP" }] }] } as never);
    const { policy, error } = policyFromApiOrClosed(np);
    expect(error?.field).toBe("spec.ingress[0].ports[0].protocol");
    expect(policy.ingress).toEqual([]);
    expect(policy.egress).toBeUndefined();
  });
  test("the raw API's `from` is read as well as the client's `_from`", () => {
    const p = policyFromApi(
      netpol("x", "raw", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] } as never),
    );
    expect(p.ingress?.[0]?.peers?.length).toBe(1);
  });
  test("pods: finished ones and named ports", () => {
    const base = { metadata: { name: "p", namespace: "x" }, spec: { containers: [] } };
    expect(podFromApi({ ...base, status: { phase: "Succeeded", podIP: "10.32.0.9" } })).toBeUndefined();
    const p = podFromApi({
      ...base,
      spec: { nodeName: "n1", containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] },
      status: { phase: "Running", podIPs: [{ ip: "10.32.0.9" }] },
    });
    expect(p).toMatchObject({ ips: ["10.32.0.9"], node: "n1", ports: [{ name: "http", port: 8080, protocol: "TCP" }] });
  });
});
