/**
 * The cases of upstream's netpol e2e (kubernetes/kubernetes test/e2e/network/netpol/
 * network_policy.go), one per test name, grouped as the notes group them (cases/*.ts), on
 * the classic full model: all 9 pods in every case, so where upstream now lists only the
 * pods a test needs, its expectation is written out here for all 9. Cases marked `ours`
 * have no upstream connectivity test (policyTypes defaults, endPort, Service DNAT); a step
 * marked "ours" extends an upstream case.
 */
import { defaultCases, ingressCases } from "./cases/defaults-ingress.ts";
import { egressCases } from "./cases/egress.ts";
import { endPortCases, ipBlockCases, portCases } from "./cases/ip-block-ports.ts";
import { namespaceSelectorCases } from "./cases/namespace-selector.ts";
import { protocolCases, sctpCases } from "./cases/protocols.ts";
import { serviceCases, updateCases } from "./cases/updates-services.ts";
import type { Group } from "./scenario.ts";
import type { PodKey } from "./truth-table.ts";

/** Every group; `ip` gives a pod's address (the ipBlock and Service cases are built on them). */
export function netpolCases(ip: (pod: PodKey) => string): Group[] {
  return [
    { name: "defaults", cases: defaultCases() },
    { name: "ingress", cases: ingressCases() },
    { name: "egress", cases: egressCases() },
    { name: "namespaceSelector", cases: namespaceSelectorCases() },
    { name: "ipBlock", cases: ipBlockCases(ip) },
    { name: "ports and named ports", cases: portCases() },
    { name: "endPort", cases: endPortCases() },
    { name: "protocols", cases: protocolCases() },
    { name: "SCTP connectivity", cases: sctpCases() },
    { name: "updates and deletion", cases: updateCases() },
    { name: "Services", cases: serviceCases(ip) },
  ];
}
