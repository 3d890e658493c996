/**
 * Protocols: TCP, UDP, and SCTP-only policies (which must isolate and never open TCP), the UDP
 * re-runs of upstream's `Netpol [LinuxOnly]` and the SCTP ones of `Netpol [Feature:SCTPConnectivity]`.
 */
import type { Case } from "../scenario.ts";
import {
  allTrue,
  create,
  denyIngressX,
  nsIs,
  onlyFromY,
  onlyFromYaStep,
  pod,
  policy,
  SCTP80,
  step,
  TCP80,
  TCP81,
  UDP80,
  UDP81,
} from "./build.ts";

export function protocolCases(): Case[] {
  return [
    {
      name: "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
      steps: [
        step(
          [create(policy("x", "allow-ingress-by-proto", pod("a"), { ingress: [{ ports: [{ protocol: "TCP" }] }] }))],
          TCP80,
          allTrue,
        ),
        step([], UDP80, (r) => r.expectPeer({}, { namespace: "x", pod: "a" }, false)),
      ],
    },
    {
      name: "should not allow access by TCP when a policy specifies only UDP",
      steps: [
        step(
          [
            create(
              policy("x", "allow-only-udp-ingress-on-port-81", pod("a"), {
                ingress: [{ ports: [{ port: 81, protocol: "UDP" }] }],
              }),
            ),
          ],
          TCP81,
          (r) => r.expectAllIngress("x/a", false),
        ),
        step([], UDP81, allTrue), // ours: and UDP 81 is open
      ],
    },
    {
      name: "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
      steps: [
        step(
          [
            create(denyIngressX),
            create(
              policy("x", "allow-only-sctp-ingress-on-port-81", pod("a"), {
                ingress: [{ ports: [{ port: 81, protocol: "SCTP" }] }],
              }),
            ),
          ],
          TCP81,
          (r) => r.expectPeer({}, { namespace: "x" }, false),
        ),
      ],
    },
    {
      name: "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
      steps: [
        step(
          [
            create(
              policy("x", "allow-only-sctp-ingress-on-port-80", pod("a"), {
                ingress: [{ ports: [{ port: 80, protocol: "SCTP" }] }],
              }),
            ),
          ],
          TCP81,
          (r) => r.expectAllIngress("x/a", false),
        ),
      ],
    },
    {
      name: "UDP: should support a 'default-deny-ingress' policy",
      steps: [step([create(denyIngressX)], UDP80, (r) => r.expectPeer({}, { namespace: "x" }, false))],
    },
    {
      name: "UDP: should enforce policy based on Ports",
      steps: [
        step(
          [
            create(
              policy("x", "allow-ingress-on-port-81-ns-x", pod("a"), {
                ingress: [{ from: [{ namespaceSelector: nsIs("y") }], ports: [{ port: 81, protocol: "UDP" }] }],
              }),
            ),
          ],
          UDP81,
          onlyFromY,
        ),
      ],
    },
    {
      name: "UDP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
      steps: [onlyFromYaStep(UDP80)],
    },
  ];
}

export function sctpCases(): Case[] {
  return [
    {
      name: "SCTP: should support a 'default-deny-ingress' policy",
      steps: [step([create(denyIngressX)], SCTP80, (r) => r.expectPeer({}, { namespace: "x" }, false))],
    },
    {
      name: "SCTP: should enforce policy based on Ports",
      steps: [
        step(
          [
            create(
              policy("x", "allow-ingress-on-port-81-ns-x", pod("a"), {
                ingress: [{ from: [{ namespaceSelector: nsIs("y") }], ports: [{ port: 81, protocol: "SCTP" }] }],
              }),
            ),
          ],
          { port: 81, protocol: "SCTP" },
          onlyFromY,
        ),
      ],
    },
    {
      name: "SCTP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
      steps: [onlyFromYaStep(SCTP80)],
    },
  ];
}
