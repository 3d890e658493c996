/**
 * Request paths: what a resource path names (kind, namespace, name, subresource).
 * `/api/v1/namespaces/NS/pods/NAME/log`, `/apis/apps/v1/daemonsets`, `/api/v1/nodes/N/status`.
 */
import { groupVersion, RESOURCES, type ResourceDef } from "./resources.ts";

export interface Target {
  def: ResourceDef;
  namespace?: string;
  name?: string;
  sub?: string;
}

/** Maps a resource path to what it names, or undefined. */
export function target(segs: string[]): Target | undefined {
  let gv: string;
  let rest: string[];
  if (segs[0] === "api" && segs.length >= 2) [gv, rest] = [segs[1]!, segs.slice(2)];
  else if (segs[0] === "apis" && segs.length >= 3) [gv, rest] = [`${segs[1]}/${segs[2]}`, segs.slice(3)];
  else return undefined;
  const inGv = RESOURCES.filter((r) => groupVersion(r) === gv);
  const namespaced =
    rest[0] === "namespaces" && rest.length >= 3 ? inGv.find((r) => r.namespaced && r.plural === rest[2]) : undefined;
  if (namespaced)
    return rest.length <= 5 ? { def: namespaced, namespace: rest[1], name: rest[3], sub: rest[4] } : undefined;
  const d = inGv.find((r) => r.plural === rest[0]);
  if (!d || rest.length > 3 || (d.namespaced && rest.length > 1)) return undefined;
  return { def: d, name: rest[1], sub: rest[2] };
}

/** The path segments of a URL, decoded. */
export const segmentsOf = (url: URL) => url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
