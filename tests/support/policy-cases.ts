/**
 * The semantics checklist of /work/shared/notes/network-policy.md as a table: each case
 * is a set of policies on the x/y/z model (policy-fixture.ts) and the verdicts the API
 * defines for some connections ("x/a" is a pod, anything else an address outside). The
 * evaluator is checked against these; the compiler against the evaluator everywhere.
 */
import type { V1NetworkPolicy } from "@kubernetes/client-node";
import { netpol, OUTSIDE } from "./policy-fixture.ts";

export type Expect = [from: string, to: string, port: string, allowed: boolean];
export type Case = { name: string; policies: V1NetworkPolicy[]; expect: Expect[] };

const ns = (name: string) => ({ matchLabels: { ns: name } });
const podSel = (name: string) => ({ matchLabels: { pod: name } });
const all = {};

export const CASES: Case[] = [
  {
    name: "no policy: everything open, external too",
    policies: [],
    expect: [
      ["x/a", "y/b", "80/TCP", true],
      [OUTSIDE, "x/a", "81/UDP", true],
      ["x/a", OUTSIDE, "80/TCP", true],
    ],
  },
  {
    name: "default-deny-ingress in x: x's pods closed to all, their egress open, other namespaces open",
    policies: [netpol("x", "deny", { podSelector: all })],
    expect: [
      ["x/a", "x/b", "80/TCP", false],
      ["y/a", "x/b", "80/UDP", false],
      [OUTSIDE, "x/c", "80/TCP", false],
      ["x/a", "y/b", "80/TCP", true],
      ["y/a", "y/b", "80/TCP", true],
    ],
  },
  {
    name: "policyTypes default: an egress section implies Egress; ingress [] with it denies both",
    policies: [netpol("x", "both", { podSelector: podSel("a"), egress: [] })],
    expect: [
      ["x/a", "y/a", "80/TCP", false],
      ["y/a", "x/a", "80/TCP", false],
      ["x/b", "y/a", "80/TCP", true],
    ],
  },
  {
    name: "egress-only policy (policyTypes [Egress]) leaves ingress open",
    policies: [netpol("x", "eg", { podSelector: podSel("a"), policyTypes: ["Egress"] })],
    expect: [
      ["x/a", "x/b", "80/TCP", false],
      ["x/a", OUTSIDE, "80/TCP", false],
      ["x/b", "x/a", "80/TCP", true],
    ],
  },
  {
    name: "without Egress in policyTypes and no egress section, egress stays open",
    policies: [netpol("x", "in", { podSelector: podSel("a") })],
    expect: [
      ["x/a", "x/b", "80/TCP", true],
      ["x/b", "x/a", "80/TCP", false],
    ],
  },
  {
    name: "ingress [{}] allows all, from outside too",
    policies: [netpol("x", "allow", { podSelector: all, ingress: [{}] })],
    expect: [
      ["y/a", "x/a", "80/TCP", true],
      [OUTSIDE, "x/a", "81/UDP", true],
    ],
  },
  {
    name: "union: deny-all plus an allow from y/b",
    policies: [
      netpol("x", "deny", { podSelector: all }),
      netpol("x", "from-yb", {
        podSelector: podSel("a"),
        ingress: [{ _from: [{ namespaceSelector: ns("y"), podSelector: podSel("b") }] }],
      }),
    ],
    expect: [
      ["y/b", "x/a", "80/TCP", true],
      ["y/a", "x/a", "80/TCP", false],
      ["y/b", "x/b", "80/TCP", false],
      ["z/b", "x/a", "80/TCP", false],
    ],
  },
  {
    name: "podSelector alone: only the policy's namespace",
    policies: [
      netpol("x", "from-b", { podSelector: podSel("a"), ingress: [{ _from: [{ podSelector: podSel("b") }] }] }),
    ],
    expect: [
      ["x/b", "x/a", "80/TCP", true],
      ["y/b", "x/a", "80/TCP", false],
      ["x/c", "x/a", "80/TCP", false],
    ],
  },
  {
    name: "namespaceSelector alone: every pod of the matching namespaces",
    policies: [netpol("x", "from-y", { podSelector: all, ingress: [{ _from: [{ namespaceSelector: ns("y") }] }] })],
    expect: [
      ["y/a", "x/a", "80/TCP", true],
      ["y/c", "x/b", "81/UDP", true],
      ["z/a", "x/a", "80/TCP", false],
      ["x/b", "x/a", "80/TCP", false],
    ],
  },
  {
    name: "podSelector OR namespaceSelector as two entries",
    policies: [
      netpol("x", "or", {
        podSelector: podSel("a"),
        ingress: [{ _from: [{ podSelector: podSel("b") }, { namespaceSelector: ns("z") }] }],
      }),
    ],
    expect: [
      ["x/b", "x/a", "80/TCP", true],
      ["z/c", "x/a", "80/TCP", true],
      ["y/b", "x/a", "80/TCP", false],
    ],
  },
  {
    name: "empty selectors: namespaceSelector {} is every namespace; peer podSelector {} the policy's namespace",
    policies: [
      netpol("x", "all-ns", { podSelector: podSel("a"), ingress: [{ _from: [{ namespaceSelector: all }] }] }),
      netpol("y", "own-ns", { podSelector: podSel("a"), ingress: [{ _from: [{ podSelector: all }] }] }),
    ],
    expect: [
      ["z/c", "x/a", "80/TCP", true],
      [OUTSIDE, "x/a", "80/TCP", false],
      ["y/c", "y/a", "80/TCP", true],
      ["x/c", "y/a", "80/TCP", false],
    ],
  },
  {
    name: "matchExpressions In, NotIn, Exists, DoesNotExist; namespace by kubernetes.io/metadata.name",
    policies: [
      netpol("x", "expr", {
        podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["a", "b"] }] },
        ingress: [
          {
            _from: [
              {
                namespaceSelector: {
                  matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["y"] }],
                },
                podSelector: { matchExpressions: [{ key: "pod", operator: "Exists" }] },
              },
              { podSelector: { matchExpressions: [{ key: "nothing", operator: "DoesNotExist" }] } },
            ],
          },
        ],
      }),
    ],
    expect: [
      ["z/c", "x/a", "80/TCP", true],
      ["y/c", "x/b", "80/TCP", false],
      ["x/c", "x/b", "80/TCP", true],
      ["y/a", "x/c", "80/TCP", true],
    ],
  },
  {
    name: "ipBlock with except, matched against pod addresses too",
    policies: [
      netpol("x", "block", {
        podSelector: podSel("a"),
        ingress: [{ _from: [{ ipBlock: { cidr: "10.32.1.0/24", except: ["10.32.1.11/32"] } }] }],
      }),
      netpol("x", "egress-block", {
        podSelector: podSel("b"),
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.32.2.0/24"] } }] }],
      }),
    ],
    expect: [
      ["y/a", "x/a", "80/TCP", true],
      ["y/b", "x/a", "80/TCP", false],
      ["z/a", "x/a", "80/TCP", false],
      ["x/b", OUTSIDE, "80/TCP", true],
      ["x/b", "y/c", "80/TCP", true],
      ["x/b", "z/c", "80/TCP", false],
    ],
  },
  {
    name: "ports: numbered, TCP by default, a port entry without number is every port of its protocol",
    policies: [
      netpol("x", "ports", {
        podSelector: podSel("a"),
        ingress: [{ ports: [{ port: 80 as never }, { protocol: "UDP" }] }],
      }),
    ],
    expect: [
      ["y/a", "x/a", "80/TCP", true],
      ["y/a", "x/a", "81/TCP", false],
      ["y/a", "x/a", "81/UDP", true],
      ["y/a", "x/a", "80/SCTP", false],
    ],
  },
  {
    name: "UDP only does not open TCP; SCTP only isolates and never opens TCP",
    policies: [
      netpol("x", "udp", { podSelector: podSel("a"), ingress: [{ ports: [{ protocol: "UDP", port: 80 as never }] }] }),
      netpol("x", "sctp", {
        podSelector: podSel("b"),
        ingress: [{ ports: [{ protocol: "SCTP", port: 80 as never }] }],
      }),
    ],
    expect: [
      ["y/a", "x/a", "80/UDP", true],
      ["y/a", "x/a", "80/TCP", false],
      ["y/a", "x/b", "80/SCTP", true],
      ["y/a", "x/b", "80/TCP", false],
      ["y/a", "x/b", "80/UDP", false],
    ],
  },
  {
    name: "named ports resolve on the destination pod (ingress) and on each peer pod (egress)",
    policies: [
      netpol("x", "named-in", {
        podSelector: podSel("a"),
        ingress: [{ ports: [{ port: "serve-81-tcp" as never }, { port: "serve-80-udp" as never, protocol: "UDP" }] }],
      }),
      netpol("x", "named-out", {
        podSelector: podSel("b"),
        policyTypes: ["Egress"],
        egress: [{ to: [{ namespaceSelector: ns("y") }], ports: [{ port: "serve-80-tcp" as never }] }],
      }),
      netpol("x", "named-missing", {
        podSelector: podSel("c"),
        ingress: [{ ports: [{ port: "no-such-port" as never }] }],
      }),
    ],
    expect: [
      ["y/a", "x/a", "81/TCP", true],
      ["y/a", "x/a", "80/TCP", false],
      ["y/a", "x/a", "80/UDP", true],
      ["x/b", "y/c", "80/TCP", true],
      ["x/b", "y/c", "81/TCP", false],
      ["x/b", "z/c", "80/TCP", false],
      ["y/a", "x/c", "80/TCP", false],
    ],
  },
  {
    name: "endPort: an inclusive range",
    policies: [
      netpol("x", "range", { podSelector: podSel("a"), ingress: [{ ports: [{ port: 79 as never, endPort: 80 }] }] }),
    ],
    expect: [
      ["y/a", "x/a", "80/TCP", true],
      ["y/a", "x/a", "81/TCP", false],
    ],
  },
  {
    name: "pod to pod needs the client's egress and the server's ingress",
    policies: [
      netpol("x", "in-from-y", { podSelector: podSel("a"), ingress: [{ _from: [{ namespaceSelector: ns("y") }] }] }),
      netpol("y", "out-deny", { podSelector: podSel("b"), policyTypes: ["Egress"] }),
    ],
    expect: [
      ["y/a", "x/a", "80/TCP", true],
      ["y/b", "x/a", "80/TCP", false],
    ],
  },
  {
    name: "egress allowed to a pod in another namespace by podSelector AND namespaceSelector",
    policies: [
      netpol("x", "out", {
        podSelector: podSel("a"),
        policyTypes: ["Egress"],
        egress: [{ to: [{ namespaceSelector: ns("y"), podSelector: podSel("b") }], ports: [{ port: 80 as never }] }],
      }),
    ],
    expect: [
      ["x/a", "y/b", "80/TCP", true],
      ["x/a", "y/b", "81/TCP", false],
      ["x/a", "y/a", "80/TCP", false],
      ["x/a", "z/b", "80/TCP", false],
    ],
  },
];
