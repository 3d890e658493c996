/**
 * ClusterIP allocation from the service range (10.96.0.0/12, kubeadm's default): the
 * `kubernetes` Service holds the first address, 10.96.0.1; other Services get a free
 * address at random, or keep one they ask for when it is in the range and free. The
 * addresses in use are those of the Services in the store, so nothing else is kept.
 */
import { ipToNum, isIpv4, numToIp } from "../../cidr.ts";
import { invalidFields } from "./errors.ts";
import type { Doc } from "./json.ts";
import type { ResourceDef } from "./resources.ts";

export const SERVICE_RANGE = "10.96.0.0/12";
export const KUBERNETES_SERVICE_IP = "10.96.0.1";

const FIRST = ipToNum("10.96.0.0");
const SIZE = 2 ** 20;

const inRange = (ip: string) => isIpv4(ip) && ipToNum(ip) > FIRST && ipToNum(ip) < FIRST + SIZE - 1;

/** Sets spec.clusterIP(s) of a new Service (in place); 422 for an address out of range or taken. */
export function allocateClusterIP(d: ResourceDef, svc: Doc, used: Set<string>): void {
  const spec = svc.spec as Doc;
  if (spec.type === "ExternalName") return;
  const asked: string | undefined = spec.clusterIP || spec.clusterIPs?.[0];
  if (asked === "None") {
    spec.clusterIP = "None";
    spec.clusterIPs = ["None"];
    return;
  }
  if (asked) {
    const fail = (why: string) =>
      invalidFields(d, svc.metadata.name, [
        {
          reason: "FieldValueInvalid",
          field: "spec.clusterIPs",
          message: `Invalid value: ${JSON.stringify([asked])}: failed to allocate IP ${asked}: ${why}`,
        },
      ]);
    if (!inRange(asked))
      throw fail(`the provided IP (${asked}) is not in the valid range. The range of valid IPs is ${SERVICE_RANGE}`);
    if (used.has(asked)) throw fail("provided IP is already allocated");
    spec.clusterIP = asked;
    spec.clusterIPs = [asked];
    return;
  }
  for (;;) {
    const candidate = numToIp(FIRST + 2 + Math.floor(Math.random() * (SIZE - 3)));
    if (used.has(candidate)) continue;
    spec.clusterIP = candidate;
    spec.clusterIPs = [candidate];
    return;
  }
}
