/**
 * Upstream's namespaceSelector cases, by labels, by expressions and by the default name label.
 */
import type { Case } from "../scenario.ts";
import {
  allTrue,
  create,
  labels,
  NS_NAME,
  nsIs,
  nsNotIn,
  onlyFromY,
  onlyFromYaStep,
  pod,
  policy,
  step,
  TCP80,
  to,
  xaFromOnly,
} from "./build.ts";

export function namespaceSelectorCases(): Case[] {
  return [
    {
      name: "should enforce policy to allow ingress traffic from pods in all namespaces",
      steps: [step([xaFromOnly("allow-from-another-ns", { namespaceSelector: labels() })], TCP80, allTrue)],
    },
    {
      name: "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
      steps: [step([xaFromOnly("allow-client-a-via-ns-selector", { namespaceSelector: nsIs("y") })], TCP80, onlyFromY)],
    },
    {
      name: "should enforce policy based on NamespaceSelector with MatchExpressions",
      steps: [
        step(
          [
            xaFromOnly("allow-ns-y-match-selector", {
              namespaceSelector: { matchExpressions: [{ key: NS_NAME, operator: "In", values: ["y"] }] },
            }),
          ],
          TCP80,
          onlyFromY,
        ),
      ],
    },
    {
      name: "should enforce policy based on PodSelector or NamespaceSelector",
      steps: [
        step(
          [xaFromOnly("allow-ns-y-match-selector", { namespaceSelector: nsNotIn("x") }, { podSelector: pod("b") })],
          TCP80,
          (r) => r.expect("x/a", "x/a", false).expect("x/c", "x/a", false),
        ),
      ],
    },
    {
      name: "should enforce policy based on PodSelector and NamespaceSelector",
      steps: [
        step(
          [
            xaFromOnly("allow-ns-y-podselector-and-nsselector", {
              namespaceSelector: nsNotIn("x"),
              podSelector: pod("b"),
            }),
          ],
          TCP80,
          (r) => r.expectAllIngress("x/a", false).expect("y/b", "x/a", true).expect("z/b", "x/a", true),
        ),
      ],
    },
    {
      name: "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
      steps: [
        step(
          [
            xaFromOnly("allow-ns-y-z-pod-b-c", {
              namespaceSelector: nsNotIn("x"),
              podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b", "c"] }] },
            }),
          ],
          TCP80,
          (r) =>
            r
              .expectPeer({ namespace: "x" }, { namespace: "x", pod: "a" }, false)
              .expect("y/a", "x/a", false)
              .expect("z/a", "x/a", false),
        ),
      ],
    },
    {
      name: "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
      steps: [onlyFromYaStep(TCP80)],
    },
    {
      name: "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
      steps: [
        step(
          [xaFromOnly("allow-client-a-via-ns-selector-for-immutable-ns-label", { namespaceSelector: nsIs("y") })],
          TCP80,
          onlyFromY,
        ),
      ],
    },
    {
      name: "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
      steps: [
        step(
          [
            create(
              policy("x", "allow-ns-y-match-selector-for-immutable-ns-label", pod("a"), {
                egress: [to({ namespaceSelector: nsNotIn("y") })],
              }),
            ),
          ],
          TCP80,
          (r) => r.expectPeer({ namespace: "x", pod: "a" }, { namespace: "y" }, false),
        ),
      ],
    },
  ];
}
