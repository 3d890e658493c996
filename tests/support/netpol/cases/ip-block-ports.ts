/**
 * ipBlock with except (pod addresses included), numbered and named ports, and endPort
 * (ours: upstream tests endPort only through the API, with no traffic).
 */
import type { Case } from "../scenario.ts";
import type { PodKey } from "../truth-table.ts";
import {
  allowFromYOn,
  allTrue,
  create,
  labels,
  largeCidr,
  nsIs,
  onlyFromY,
  onlyYReachesXa,
  pod,
  policy,
  step,
  TCP80,
  TCP81,
  to,
  update,
} from "./build.ts";

export function ipBlockCases(ip: (pod: PodKey) => string): Case[] {
  const largeCidrExceptB = policy("x", "allow-client-a-via-cidr-egress-rule", pod("a"), {
    egress: [to({ ipBlock: { cidr: largeCidr(ip("x/b")), except: [`${ip("x/b")}/32`] } })],
  });
  return [
    {
      name: "should allow egress access to server in CIDR block",
      steps: [
        step(
          [
            create(
              policy("x", "allow-client-a-via-cidr-egress-rule", pod("a"), {
                egress: [to({ ipBlock: { cidr: `${ip("y/b")}/32` } })],
              }),
            ),
          ],
          TCP80,
          (r) => r.expectAllEgress("x/a", false).expect("x/a", "y/b", true),
        ),
      ],
    },
    {
      name: "should enforce except clause while egress access to server in CIDR block",
      steps: [step([create(largeCidrExceptB)], TCP80, (r) => r.expect("x/a", "x/b", false))],
    },
    {
      name: "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
      steps: [
        step([create(largeCidrExceptB)], TCP80, (r) => r.expect("x/a", "x/b", false)),
        step(
          [
            update(
              policy("x", "allow-client-a-via-cidr-egress-rule", pod("a"), {
                egress: [to({ ipBlock: { cidr: `${ip("x/b")}/32` } })],
              }),
            ),
          ],
          TCP80,
          (r) => r.expectAllEgress("x/a", false).expect("x/a", "x/b", true),
        ),
        // ours: the excepting policy back beside the allowing one; their union allows both
        step([create({ ...largeCidrExceptB, metadata: { name: "allow-except-b", namespace: "x" } })], TCP80, allTrue),
      ],
    },
  ];
}

export function portCases(): Case[] {
  return [
    {
      name: "should enforce policy based on Ports",
      steps: [step([create(allowFromYOn("allow-client-a-via-ns-selector", 81))], TCP81, onlyYReachesXa)],
    },
    {
      name: "should allow ingress access on one named port",
      steps: [
        step(
          [create(policy("x", "allow-all", labels(), { ingress: [{ ports: [{ port: "serve-81-tcp" }] }] }))],
          TCP81,
          allTrue,
        ),
        step([], TCP80, (r) => r.expectPeer({}, { namespace: "x" }, false)),
      ],
    },
    {
      name: "should allow ingress access from namespace on one named port",
      steps: [
        step(
          [
            create(
              policy("x", "allow-client-a-via-ns-selector-80", pod("a"), {
                ingress: [
                  { from: [{ namespaceSelector: nsIs("y") }], ports: [{ port: "serve-80-tcp", protocol: "TCP" }] },
                ],
              }),
            ),
          ],
          TCP80,
          onlyFromY,
        ),
        step([], TCP81, (r) => r.expectAllIngress("x/a", false)),
      ],
    },
    {
      name: "should allow egress access on one named port",
      steps: [
        step(
          [create(policy("x", "allow-egress", labels(), { egress: [{ ports: [{ port: "serve-80-tcp" }] }] }))],
          TCP80,
          allTrue,
        ),
        step([], TCP81, (r) => r.expectPeer({ namespace: "x" }, {}, false)),
      ],
    },
  ];
}

export function endPortCases(): Case[] {
  const endPortRange = (ports: { port: number; endPort?: number }[]) =>
    policy("x", "allow-port-range", pod("a"), { ingress: [{ ports }] });
  return [
    {
      name: "endPort: a range 80..81 allows both ports, port 80 alone only 80, a range 81..90 only 81",
      ours: true,
      steps: [
        step([create(endPortRange([{ port: 80, endPort: 81 }]))], TCP80, allTrue),
        step([], TCP81, allTrue),
        step([update(endPortRange([{ port: 80 }]))], TCP81, (r) => r.expectAllIngress("x/a", false)),
        step([], TCP80, allTrue),
        step([update(endPortRange([{ port: 81, endPort: 90 }]))], TCP80, (r) => r.expectAllIngress("x/a", false)),
        step([], TCP81, allTrue),
      ],
    },
  ];
}
