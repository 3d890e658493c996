/**
 * Upstream's egress cases.
 */
import type { Case } from "../scenario.ts";
import { allTrue, create, from, fromXa, labels, nsIs, pod, policy, step, TCP80, TCP81, to } from "./build.ts";

export function egressCases(): Case[] {
  return [
    {
      name: "should deny egress from pods based on PodSelector",
      steps: [
        step([create(policy("x", "deny-egress-pod-a", pod("a"), { egress: [] }))], TCP80, (r) =>
          r.expectAllEgress("x/a", false),
        ),
      ],
    },
    {
      name: "should deny egress from all pods in a namespace",
      steps: [
        step([create(policy("x", "deny-egress-ns-x", labels(), { egress: [] }))], TCP80, (r) =>
          r.expectPeer({ namespace: "x" }, {}, false),
        ),
      ],
    },
    {
      name: "should work with Ingress, Egress specified together",
      steps: [
        step(
          [
            create({
              metadata: { name: "allow-client-a-via-pod-selector", namespace: "x" },
              spec: {
                podSelector: pod("a"),
                ingress: [from({ podSelector: pod("b") })],
                egress: [{ ports: [{ port: 80 }] }],
                policyTypes: ["Egress", "Ingress"],
              },
            }),
          ],
          TCP80,
          (r) => r.expectAllIngress("x/a", false).expect("x/b", "x/a", true),
        ),
        step([], TCP81, (r) =>
          r.expectAllIngress("x/a", false).expectAllEgress("x/a", false).expect("x/b", "x/a", true),
        ),
      ],
    },
    {
      name: "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
      steps: [
        step(
          [
            create(
              policy("x", "allow-to-ns-y-pod-a", pod("a"), {
                egress: [to({ namespaceSelector: nsIs("y"), podSelector: pod("a") })],
              }),
            ),
            create(policy("y", "allow-from-xa-on-ya-match-selector", pod("a"), { ingress: [fromXa()] })),
            create(policy("y", "allow-from-xa-on-yb-match-selector", pod("b"), { ingress: [fromXa()] })),
          ],
          TCP80,
          (r) =>
            r
              .expectPeer({ namespace: "x", pod: "a" }, {}, false)
              .expectPeer({}, { namespace: "y", pod: "a" }, false)
              .expectPeer({ namespace: "x", pod: "a" }, { namespace: "y", pod: "a" }, true)
              .expectPeer({}, { namespace: "y", pod: "b" }, false),
        ),
      ],
    },
    {
      name: "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
      steps: [
        step(
          [
            create(
              policy("x", "allow-to-ns-y-pod-a", pod("a"), {
                egress: [to({ namespaceSelector: nsIs("y"), podSelector: pod("a") })],
              }),
            ),
          ],
          TCP80,
          (r) => r.expectAllEgress("x/a", false).expect("x/a", "y/a", true),
        ),
      ],
    },
    {
      name: "should enforce multiple egress policies with egress allow-all policy taking precedence",
      steps: [
        step(
          [create(policy("x", "allow-egress-port-80", labels(), { egress: [{ ports: [{ port: 80 }] }] }))],
          TCP81,
          (r) => r.expectPeer({ namespace: "x" }, {}, false),
        ),
        step([create(policy("x", "allow-egress", labels(), { egress: [{}] }))], TCP81, allTrue),
      ],
    },
    {
      name: "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
      steps: [
        step([create(policy("x", "allow-egress-for-target", pod("a"), { egress: [{}] }))], TCP80, allTrue),
        step([create(policy("x", "deny-ingress-via-label-selector", pod("a"), { ingress: [] }))], TCP80, (r) =>
          r.expectAllIngress("x/a", false),
        ),
      ],
    },
  ];
}
