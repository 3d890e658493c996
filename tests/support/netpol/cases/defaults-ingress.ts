/**
 * Upstream's default policies (deny ingress, deny all, allow all) and its ingress cases.
 */
import type { Case } from "../scenario.ts";
import {
  allowFromYOn,
  allTrue,
  create,
  denyIngressX,
  from,
  labels,
  onlyYReachesXa,
  pod,
  policy,
  step,
  TCP80,
  TCP81,
} from "./build.ts";

export function defaultCases(): Case[] {
  return [
    {
      name: "should support a 'default-deny-ingress' policy",
      steps: [step([create(denyIngressX)], TCP80, (r) => r.expectPeer({}, { namespace: "x" }, false))],
    },
    {
      name: "should support a 'default-deny-all' policy",
      steps: [
        step([create(policy("x", "deny-all", labels(), { ingress: [], egress: [] }))], TCP80, (r) =>
          r.expectPeer({}, { namespace: "x" }, false).expectPeer({ namespace: "x" }, {}, false),
        ),
      ],
    },
    {
      name: "should support allow-all policy",
      steps: [step([create(policy("x", "allow-all", labels(), { ingress: [{}] }))], TCP80), step([], TCP81)],
    },
    {
      name: "policyTypes left out: Ingress always, Egress only when the policy has egress rules",
      ours: true,
      steps: [
        step(
          [
            create({
              metadata: { name: "a-egress-80", namespace: "x" },
              spec: { podSelector: pod("a"), egress: [{ ports: [{ port: 80 }] }] },
            }),
            create({
              metadata: { name: "b-empty-egress", namespace: "x" },
              spec: { podSelector: pod("b"), egress: [] },
            }),
          ],
          TCP80,
          (r) => r.expectAllIngress("x/a", false).expectAllIngress("x/b", false),
        ),
        step([], TCP81, (r) =>
          r.expectAllIngress("x/a", false).expectAllIngress("x/b", false).expectAllEgress("x/a", false),
        ),
      ],
    },
  ];
}

export function ingressCases(): Case[] {
  return [
    {
      name: "should enforce policy to allow ingress traffic for a target",
      steps: [
        step(
          [
            create(policy("x", "deny-all", labels(), { ingress: [] })),
            create(
              policy("x", "allow-all-to-a", pod("a"), { ingress: [from({ podSelector: {}, namespaceSelector: {} })] }),
            ),
          ],
          TCP80,
          (r) => r.expectAllIngress("x/a", true).expectAllIngress("x/b", false).expectAllIngress("x/c", false),
        ),
      ],
    },
    {
      name: "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
      steps: [
        step(
          [create(policy("x", "x-a-allows-x-b", pod("a"), { ingress: [from({ podSelector: pod("b") })] }))],
          TCP80,
          (r) => r.expectAllIngress("x/a", false).expect("x/b", "x/a", true),
        ),
      ],
    },
    {
      name: "should enforce policy based on PodSelector with MatchExpressions",
      steps: [
        step(
          [
            create(
              policy("x", "x-a-allows-x-b", pod("a"), {
                ingress: [from({ podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b"] }] } })],
              }),
            ),
          ],
          TCP80,
          (r) => r.expectAllIngress("x/a", false).expect("x/b", "x/a", true),
        ),
      ],
    },
    {
      name: "should enforce policy based on any PodSelectors",
      steps: [
        step(
          [
            create(
              policy("x", "allow-ns-x-pod-b-c", pod("a"), {
                ingress: [from({ podSelector: pod("b") }, { podSelector: pod("c") })],
              }),
            ),
          ],
          TCP80,
          (r) => r.expectAllIngress("x/a", false).expect("x/b", "x/a", true).expect("x/c", "x/a", true),
        ),
      ],
    },
    {
      name: "should deny ingress from pods on other namespaces",
      steps: [
        step(
          [create(policy("x", "deny-empty-policy", labels(), { ingress: [from({ podSelector: labels() })] }))],
          TCP80,
          (r) =>
            r
              .expectPeer({ namespace: "y" }, { namespace: "x" }, false)
              .expectPeer({ namespace: "z" }, { namespace: "x" }, false),
        ),
      ],
    },
    {
      name: "should enforce multiple, stacked policies with overlapping podSelectors",
      steps: [
        step([create(allowFromYOn("allow-client-a-via-ns-selector", 81))], TCP81, onlyYReachesXa),
        step([], TCP80, (r) => r.expectAllIngress("x/a", false)),
        step([create(allowFromYOn("allow-client-a-via-ns-selector-80", 80))], TCP80, onlyYReachesXa),
      ],
    },
    {
      name: "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
      steps: [
        step(
          [create(policy("x", "allow-ingress-port-80", labels(), { ingress: [{ ports: [{ port: 80 }] }] }))],
          TCP81,
          (r) => r.expectPeer({}, { namespace: "x" }, false),
        ),
        step([create(policy("x", "allow-ingress", labels(), { ingress: [{}] }))], TCP81, allTrue),
      ],
    },
  ];
}
