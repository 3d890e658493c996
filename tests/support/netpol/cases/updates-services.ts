/**
 * Updates of a policy, of a namespace's labels and of a pod's labels; deletion; and (ours)
 * enforcement after a Service's DNAT.
 */
import type { Case } from "../scenario.ts";
import type { PodKey } from "../truth-table.ts";
import {
  allTrue,
  create,
  labels,
  pod,
  policy,
  step,
  TCP80,
  TCP81,
  to,
  UDP81,
  update,
  viaService,
  xaFromOnly,
} from "./build.ts";

export function updateCases(): Case[] {
  const updatedPolicy = policy("x", "allow-all-mutate-to-deny-all", labels(), { ingress: [{}] });
  return [
    {
      name: "should enforce updated policy",
      steps: [
        step([create(updatedPolicy)], TCP81, allTrue),
        step([update({ ...updatedPolicy, spec: { ...updatedPolicy.spec, ingress: [] } })], TCP81, (r) =>
          r.expectPeer({}, { namespace: "x" }, false),
        ),
      ],
    },
    {
      name: "should allow ingress access from updated namespace",
      steps: [
        step(
          [xaFromOnly("allow-client-a-via-ns-selector", { namespaceSelector: labels({ ns2: "updated" }) })],
          TCP80,
          (r) => r.expectAllIngress("x/a", false),
        ),
        step([{ kind: "add-namespace-labels", namespace: "y", labels: { ns2: "updated" } }], TCP80, (r) =>
          r.expectAllIngress("x/a", false).expectPeer({ namespace: "y" }, {}, true),
        ),
      ],
    },
    {
      name: "should allow ingress access from updated pod",
      steps: [
        step(
          [xaFromOnly("allow-client-a-via-pod-selector", { podSelector: labels({ pod: "b", pod2: "updated" }) })],
          TCP80,
          (r) => r.expectAllIngress("x/a", false),
        ),
        step([{ kind: "add-pod-labels", pod: "x/b", labels: { pod2: "updated" } }], TCP80, (r) =>
          r.expectAllIngress("x/a", false).expect("x/b", "x/a", true),
        ),
      ],
    },
    {
      name: "should deny ingress access to updated pod",
      steps: [
        step(
          [create(policy("x", "deny-ingress-via-label-selector", labels({ target: "isolated" }), { ingress: [] }))],
          TCP80,
          allTrue,
        ),
        step([{ kind: "add-pod-labels", pod: "x/a", labels: { target: "isolated" } }], TCP80, (r) =>
          r.expectAllIngress("x/a", false),
        ),
      ],
    },
    {
      name: "should stop enforcing policies after they are deleted",
      steps: [
        step([create(policy("x", "deny-all", labels(), { ingress: [], egress: [] }))], TCP80, (r) =>
          r.expectPeer({ namespace: "x" }, {}, false).expectPeer({}, { namespace: "x" }, false),
        ),
        step([{ kind: "delete-policies" }], TCP80, allTrue),
      ],
    },
  ];
}

export function serviceCases(ip: (pod: PodKey) => string): Case[] {
  return [
    {
      name: "through a Service address DNATed on the client's node: ingress and egress are judged on the pod it lands on",
      ours: true,
      steps: [
        step([xaFromOnly("x-a-allows-x-b", { podSelector: pod("b") })], viaService(TCP80), (r) =>
          r.expectAllIngress("x/a", false).expect("x/b", "x/a", true),
        ),
        step([], viaService(UDP81), (r) => r.expectAllIngress("x/a", false).expect("x/b", "x/a", true)),
        step(
          [
            create(
              policy("x", "b-egress-to-y-a", pod("b"), { egress: [to({ ipBlock: { cidr: `${ip("y/a")}/32` } })] }),
            ),
          ],
          viaService(TCP80),
          (r) => r.expectAllIngress("x/a", false).expectAllEgress("x/b", false).expect("x/b", "y/a", true),
        ),
      ],
    },
  ];
}
