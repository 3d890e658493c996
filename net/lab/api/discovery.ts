/**
 * Discovery: `/version`, the legacy documents (`/api`, `/apis`, `/apis/<group>`, and an
 * APIResourceList per group version) and aggregated discovery (apidiscovery.k8s.io/v2,
 * one APIGroupDiscoveryList for `/api` and one for `/apis`), which kubectl 1.32 asks for
 * first (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`)
 * and which spares it a request per group version. Both list short names, categories,
 * verbs, singular names and the subresources served.
 */
import type { Doc } from "./json.ts";
import { GROUPS, groupVersion, RESOURCES, type ResourceDef } from "./resources.ts";

/** The version the server reports; kubectl's version dispatcher picks its client by it. */
export const SERVER_VERSION = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0-weave-lab",
  gitCommit: "0000000000000000000000000000000000000000",
  gitTreeState: "clean",
  buildDate: "2026-01-01T00:00:00Z",
  goVersion: "go1.23.0",
  compiler: "gc",
  platform: "linux/amd64",
};

export const AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/** Whether a request's Accept header asks for aggregated discovery v2. */
export const wantsAggregated = (accept: string | null) =>
  (accept ?? "")
    .split(",")
    .map((part) => part.replace(/\s/g, ""))
    .some(
      (part) =>
        part.includes("g=apidiscovery.k8s.io") && part.includes("v=v2;") && part.includes("as=APIGroupDiscoveryList"),
    );

const gvFor = (group: string) => ({ groupVersion: group ? `${group}/v1` : "v1", version: "v1" });

function legacyResources(d: ResourceDef): Doc[] {
  const main = {
    name: d.plural,
    singularName: d.singular,
    namespaced: d.namespaced,
    kind: d.kind,
    verbs: d.verbs,
    ...(d.shortNames.length ? { shortNames: d.shortNames } : {}),
    ...(d.categories.length ? { categories: d.categories } : {}),
  };
  const subs = d.subresources.map((s) => ({
    name: `${d.plural}/${s.name}`,
    singularName: "",
    namespaced: d.namespaced,
    kind: s.kind ?? d.kind,
    verbs: s.verbs,
  }));
  return [main, ...subs];
}

/** The legacy discovery document at `segs` (`["api"]`, `["apis","apps","v1"]`), or undefined. */
export function legacyDiscovery(segs: string[]): Doc | undefined {
  const path = segs.join("/");
  if (path === "api")
    return {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "127.0.0.1" }],
    };
  const named = GROUPS.filter(Boolean);
  if (path === "apis")
    return {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: named.map((g) => ({ name: g, versions: [gvFor(g)], preferredVersion: gvFor(g) })),
    };
  if (segs[0] === "apis" && segs.length === 2 && named.includes(segs[1]!))
    return {
      kind: "APIGroup",
      apiVersion: "v1",
      name: segs[1],
      versions: [gvFor(segs[1]!)],
      preferredVersion: gvFor(segs[1]!),
    };
  const core = segs[0] === "api" && segs.length === 2 ? segs[1] : undefined;
  const gv = core ?? (segs[0] === "apis" && segs.length === 3 ? `${segs[1]}/${segs[2]}` : undefined);
  const defs = RESOURCES.filter((r) => groupVersion(r) === gv);
  if (!defs.length) return undefined;
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion: gv, resources: defs.flatMap(legacyResources) };
}

function aggregatedResource(d: ResourceDef): Doc {
  const responseKind = (kind: string) => ({ group: d.group, version: d.version, kind });
  return {
    resource: d.plural,
    responseKind: responseKind(d.kind),
    scope: d.namespaced ? "Namespaced" : "Cluster",
    singularResource: d.singular,
    verbs: d.verbs,
    ...(d.shortNames.length ? { shortNames: d.shortNames } : {}),
    ...(d.categories.length ? { categories: d.categories } : {}),
    ...(d.subresources.length
      ? {
          subresources: d.subresources.map((s) => ({
            subresource: s.name,
            responseKind: responseKind(s.kind ?? d.kind),
            verbs: s.verbs,
          })),
        }
      : {}),
  };
}

/** The aggregated discovery document for `/api` (core) or `/apis` (named groups). */
export function aggregatedDiscovery(core: boolean): Doc {
  const groups = GROUPS.filter((g) => (core ? g === "" : g !== ""));
  const items = groups.map((g) => ({
    metadata: g ? { name: g } : {},
    versions: [
      {
        version: "v1",
        resources: RESOURCES.filter((r) => r.group === g).map(aggregatedResource),
        freshness: "Current",
      },
    ],
  }));
  return { kind: "APIGroupDiscoveryList", apiVersion: "apidiscovery.k8s.io/v2", metadata: {}, items };
}
