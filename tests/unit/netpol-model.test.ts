/**
 * The NetworkPolicy model of the e2e tests (tests/support/netpol/model.ts) against small
 * hand-written cases, one block per item of the notes' checklist, then against upstream's
 * own expectations: for every step of every case of the e2e suite, the model's truth
 * table must equal the one upstream's test writes by hand (loopback ignored).
 */
import { describe, expect, test } from "bun:test";
import { netpolCases } from "../support/netpol/cases.ts";
import {
  allowed,
  cidrContains,
  type ModelCluster,
  type ModelPod,
  type NetworkPolicy,
  type PolicyPeer,
  type PolicyPort,
  type Protocol,
  selectorMatches,
} from "../support/netpol/model.ts";
import {
  applyToModel,
  initialCluster,
  modelReachability,
  probeName,
  upstreamReachability,
} from "../support/netpol/scenario.ts";
import type { PodKey } from "../support/netpol/truth-table.ts";

const fakeIp = (k: PodKey) => {
  const [ns, name] = k.split("/") as [string, string];
  return `10.32.${"xyz".indexOf(ns) + 1}.${"abc".indexOf(name) + 10}`;
};

const base = initialCluster(fakeIp);
const pod = (k: PodKey) => base.pods.find((p) => `${p.namespace}/${p.name}` === k)!;
const withPolicies = (...policies: NetworkPolicy[]): ModelCluster => ({ ...base, policies });
const np = (namespace: string, spec: NetworkPolicy["spec"], name = "p"): NetworkPolicy => ({
  metadata: { name, namespace },
  spec,
});
const can = (c: ModelCluster, from: PodKey, to: PodKey, port = 80, protocol: Protocol = "TCP") => {
  const find = (k: PodKey) => c.pods.find((p) => `${p.namespace}/${p.name}` === k)!;
  return allowed(c, { client: find(from), server: find(to), port, protocol });
};

describe("isolation and combining policies", () => {
  test("no policy: everything is open", () => {
    expect(can(base, "x/a", "y/b")).toBe(true);
  });
  test("a pod is isolated for a direction only when a policy selects it and lists that direction", () => {
    const c = withPolicies(
      np("x", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Egress"], egress: [] }),
    );
    expect(can(c, "x/a", "y/a")).toBe(false); // egress isolated
    expect(can(c, "y/a", "x/a")).toBe(true); // ingress open
    expect(can(c, "x/b", "y/a")).toBe(true); // not selected
    expect(can(c, "y/a", "x/b")).toBe(true);
  });
  test("policyTypes omitted: Ingress always; Egress only when there are egress rules", () => {
    const rules = np("x", { podSelector: {}, egress: [{ ports: [{ port: 81 }] }] });
    expect(can(withPolicies(rules), "x/a", "y/a", 80)).toBe(false);
    expect(can(withPolicies(rules), "x/a", "y/a", 81)).toBe(true);
    expect(can(withPolicies(rules), "y/a", "x/a", 81)).toBe(false); // ingress isolated, no ingress rules
    const empty = np("x", { podSelector: {}, egress: [] });
    expect(can(withPolicies(empty), "x/a", "y/a")).toBe(true);
    expect(can(withPolicies(empty), "y/a", "x/a")).toBe(false);
  });
  test("union of policies: a second policy can only add; order does not matter", () => {
    const deny = np("x", { podSelector: {}, policyTypes: ["Ingress"], ingress: [] }, "deny");
    const allowB = np(
      "x",
      { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }] },
      "b",
    );
    for (const c of [withPolicies(deny, allowB), withPolicies(allowB, deny)]) {
      expect(can(c, "x/b", "x/a")).toBe(true);
      expect(can(c, "x/c", "x/a")).toBe(false);
    }
  });
  test("pod to pod needs the client's egress and the server's ingress", () => {
    const egressOk = np("x", { podSelector: {}, policyTypes: ["Egress"], egress: [{}] }, "e");
    const ingressDeny = np("y", { podSelector: {}, policyTypes: ["Ingress"], ingress: [] }, "i");
    expect(can(withPolicies(egressOk, ingressDeny), "x/a", "y/a")).toBe(false);
    expect(can(withPolicies(egressOk), "x/a", "y/a")).toBe(true);
  });
  test("ingress: [] denies all, ingress: [{}] allows all", () => {
    expect(can(withPolicies(np("x", { podSelector: {}, ingress: [] })), "y/a", "x/a")).toBe(false);
    expect(can(withPolicies(np("x", { podSelector: {}, ingress: [{}] })), "y/a", "x/a", 81, "UDP")).toBe(true);
  });
  test("a pod always reaches itself", () => {
    const all = np("x", { podSelector: {}, policyTypes: ["Ingress", "Egress"], ingress: [], egress: [] });
    expect(can(withPolicies(all), "x/a", "x/a")).toBe(true);
  });
});

describe("peers and selectors", () => {
  const ingressFrom = (...from: PolicyPeer[]) =>
    withPolicies(np("x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from }] }));
  test("podSelector alone: pods of the policy's namespace only", () => {
    const c = ingressFrom({ podSelector: { matchLabels: { pod: "b" } } });
    expect(can(c, "x/b", "x/a")).toBe(true);
    expect(can(c, "y/b", "x/a")).toBe(false);
  });
  test("namespaceSelector alone: every pod of the matching namespaces", () => {
    const c = ingressFrom({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } });
    expect(["y/a", "y/b", "y/c"].every((k) => can(c, k as PodKey, "x/a"))).toBe(true);
    expect(can(c, "x/b", "x/a")).toBe(false);
  });
  test("both in one entry is AND; two entries is OR", () => {
    const and = ingressFrom({ namespaceSelector: {}, podSelector: { matchLabels: { pod: "b" } } });
    expect(can(and, "z/b", "x/a")).toBe(true);
    expect(can(and, "z/c", "x/a")).toBe(false);
    const or = ingressFrom(
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } },
      { podSelector: { matchLabels: { pod: "b" } } },
    );
    expect(can(or, "z/c", "x/a")).toBe(true);
    expect(can(or, "x/b", "x/a")).toBe(true);
    expect(can(or, "y/b", "x/a")).toBe(false);
  });
  test("empty selectors: podSelector {} is the policy's namespace, namespaceSelector {} all namespaces", () => {
    expect(can(ingressFrom({ podSelector: {} }), "x/c", "x/a")).toBe(true);
    expect(can(ingressFrom({ podSelector: {} }), "y/c", "x/a")).toBe(false);
    expect(can(ingressFrom({ namespaceSelector: {} }), "z/c", "x/a")).toBe(true);
  });
  test("matchExpressions: In, NotIn (absent key matches), Exists, DoesNotExist; with matchLabels, all must hold", () => {
    const l = { pod: "a", tier: "web" };
    expect(selectorMatches({ matchExpressions: [{ key: "pod", operator: "In", values: ["a", "b"] }] }, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "pod", operator: "NotIn", values: ["a"] }] }, l)).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }] }, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "env", operator: "In", values: ["prod"] }] }, l)).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: "tier", operator: "Exists" }] }, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] }, l)).toBe(false);
    const both = {
      matchLabels: { pod: "a" },
      matchExpressions: [{ key: "tier", operator: "In" as const, values: ["db"] }],
    };
    expect(selectorMatches(both, l)).toBe(false);
    expect(selectorMatches({}, {})).toBe(true);
  });
  test("a namespace is selected by its name label even when it has no labels of its own", () => {
    const c = ingressFrom({
      namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["z"] }] },
    });
    expect(can(c, "z/a", "x/a")).toBe(true);
    expect(can(c, "y/a", "x/a")).toBe(false);
  });
  test("label changes take effect: a namespace label, a pod label", () => {
    const c = ingressFrom({ namespaceSelector: { matchLabels: { team: "blue" } } });
    expect(can(c, "y/a", "x/a")).toBe(false);
    const labelled = applyToModel(c, { kind: "add-namespace-labels", namespace: "y", labels: { team: "blue" } });
    expect(can(labelled, "y/a", "x/a")).toBe(true);
    const isolate = withPolicies(np("x", { podSelector: { matchLabels: { lock: "yes" } }, ingress: [] }));
    expect(can(isolate, "y/a", "x/a")).toBe(true);
    expect(
      can(applyToModel(isolate, { kind: "add-pod-labels", pod: "x/a", labels: { lock: "yes" } }), "y/a", "x/a"),
    ).toBe(false);
  });
});

describe("ipBlock", () => {
  const egressTo = (cidr: string, except?: string[]) =>
    withPolicies(
      np("x", {
        podSelector: { matchLabels: { pod: "a" } },
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr, except } }] }],
      }),
    );
  test("cidr minus except, matched against pod addresses too", () => {
    const c = egressTo("10.32.0.0/16", ["10.32.2.0/24"]);
    expect(can(c, "x/a", "x/b")).toBe(true); // 10.32.1.11
    expect(can(c, "x/a", "y/b")).toBe(false); // 10.32.2.11, excepted
    expect(can(egressTo(`${fakeIp("z/c")}/32`), "x/a", "z/c")).toBe(true);
    expect(can(egressTo(`${fakeIp("z/c")}/32`), "x/a", "z/b")).toBe(false);
  });
  test("an address both in cidr and except is excluded by that block, and allowed by another policy's", () => {
    const exceptB = egressTo("0.0.0.0/4", [`${fakeIp("x/b")}/32`]);
    expect(can(exceptB, "x/a", "x/b")).toBe(false);
    const both = {
      ...exceptB,
      policies: [
        ...exceptB.policies,
        ...egressTo(`${fakeIp("x/b")}/32`).policies.map((p) => ({ ...p, metadata: { ...p.metadata, name: "q" } })),
      ],
    };
    expect(can(both, "x/a", "x/b")).toBe(true);
  });
  test("an ingress ipBlock matches the client's address", () => {
    const c = withPolicies(np("x", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.32.3.0/24" } }] }] }));
    expect(can(c, "z/a", "x/a")).toBe(true);
    expect(can(c, "y/a", "x/a")).toBe(false);
  });
  test("cidr arithmetic: prefixes, host routes, the other family", () => {
    expect(cidrContains("10.32.0.0/12", "10.47.255.255")).toBe(true);
    expect(cidrContains("10.32.0.0/12", "10.48.0.0")).toBe(false);
    expect(cidrContains("0.0.0.0/0", "198.18.0.1")).toBe(true);
    expect(cidrContains("fd00::/8", "fd12::1")).toBe(true);
    expect(cidrContains("fd00::/8", "10.0.0.1")).toBe(false);
  });
});

describe("ports and protocols", () => {
  const ingressPorts = (ports: PolicyPort[]) => withPolicies(np("x", { podSelector: {}, ingress: [{ ports }] }));
  test("protocol defaults to TCP; a port entry without a number is every port of its protocol", () => {
    expect(can(ingressPorts([{ port: 80 }]), "y/a", "x/a", 80, "TCP")).toBe(true);
    expect(can(ingressPorts([{ port: 80 }]), "y/a", "x/a", 80, "UDP")).toBe(false);
    expect(can(ingressPorts([{ protocol: "UDP" }]), "y/a", "x/a", 81, "UDP")).toBe(true);
    expect(can(ingressPorts([{ protocol: "UDP" }]), "y/a", "x/a", 81, "TCP")).toBe(false);
  });
  test("an SCTP-only policy isolates and never opens TCP", () => {
    const c = ingressPorts([{ port: 80, protocol: "SCTP" }]);
    expect(can(c, "y/a", "x/a", 80, "TCP")).toBe(false);
    expect(can(c, "y/a", "x/a", 80, "SCTP")).toBe(true);
  });
  test("endPort: the inclusive range port..endPort", () => {
    const c = ingressPorts([{ port: 80, endPort: 81 }]);
    expect([79, 80, 81, 82].map((p) => can(c, "y/a", "x/a", p))).toEqual([false, true, true, false]);
  });
  test("a named port is resolved on the destination pod, with its protocol", () => {
    expect(can(ingressPorts([{ port: "serve-81-tcp" }]), "y/a", "x/a", 81)).toBe(true);
    expect(can(ingressPorts([{ port: "serve-81-tcp" }]), "y/a", "x/a", 80)).toBe(false);
    expect(can(ingressPorts([{ port: "serve-81-udp" }]), "y/a", "x/a", 81, "UDP")).toBe(false); // protocol TCP by default
    expect(can(ingressPorts([{ port: "serve-81-udp", protocol: "UDP" }]), "y/a", "x/a", 81, "UDP")).toBe(true);
    expect(can(ingressPorts([{ port: "no-such-port" }]), "y/a", "x/a", 80)).toBe(false);
  });
  test("egress named ports resolve on the server, so a server without that name is not reached", () => {
    const odd: ModelPod = { ...pod("y/a"), ports: [{ name: "serve-80-tcp", containerPort: 8080, protocol: "TCP" }] };
    const c: ModelCluster = {
      ...withPolicies(
        np("x", { podSelector: {}, policyTypes: ["Egress"], egress: [{ ports: [{ port: "serve-80-tcp" }] }] }),
      ),
    };
    c.pods = c.pods.map((p) => (p.namespace === "y" && p.name === "a" ? odd : p));
    expect(allowed(c, { client: pod("x/a"), server: odd, port: 80, protocol: "TCP" })).toBe(false);
    expect(allowed(c, { client: pod("x/a"), server: odd, port: 8080, protocol: "TCP" })).toBe(true);
    expect(can(c, "x/a", "y/b", 80)).toBe(true);
  });
});

describe("the model reproduces upstream's truth tables, step by step", () => {
  for (const group of netpolCases(fakeIp))
    for (const c of group.cases)
      test(`${group.name}: ${c.name}`, () => {
        let cluster = base;
        c.steps.forEach((s, i) => {
          for (const a of s.actions) cluster = applyToModel(cluster, a);
          const model = modelReachability(cluster, s.probe);
          const upstream = upstreamReachability(s);
          // the model plays the observer: upstream's table is the expectation
          for (const from of upstream.pods)
            for (const to of upstream.pods) upstream.observed.set(from, to, model.expected.get(from, to)!);
          const why = `step ${i + 1} (${probeName(s.probe)}):\n${upstream.summary()}`;
          expect(upstream.wrong(), why).toEqual([]);
        });
      });
});
