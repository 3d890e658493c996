/**
 * Server-side printing: a GET or watch whose Accept asks for
 * `application/json;as=Table;v=v1;g=meta.k8s.io` (what `kubectl get` sends) is answered
 * with a meta.k8s.io/v1 Table: the kind's columns (printers.ts) and a row per object,
 * whose `object` is what `includeObject` asks for: PartialObjectMetadata (the default;
 * kubectl reads the namespace and labels from it), the whole Object, or None.
 */
import { badRequest } from "./errors.ts";
import type { Doc } from "./json.ts";
import { PRINTERS } from "./printers.ts";
import { groupVersion, type ResourceDef } from "./resources.ts";

export const TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io";

/** Whether a request's Accept header asks for a meta.k8s.io/v1 Table. */
export const wantsTable = (accept: string | null) =>
  (accept ?? "")
    .split(",")
    .map((part) => part.replace(/\s/g, ""))
    .some((part) => part.includes("as=Table") && part.includes("g=meta.k8s.io") && part.includes("v=v1;"));

type IncludeObject = "PartialObjectMetadata" | "Object" | "None";

export function includeObjectOf(q: URLSearchParams): IncludeObject {
  const v = q.get("includeObject") ?? "PartialObjectMetadata";
  if (v === "PartialObjectMetadata" || v === "Object" || v === "None") return v;
  throw badRequest(`includeObject must be one of "Object", "PartialObjectMetadata" or "None", got "${v}"`);
}

function rowObject(d: ResourceDef, o: Doc, include: IncludeObject): Doc | undefined {
  if (include === "None") return undefined;
  if (include === "Object") return { apiVersion: groupVersion(d), kind: d.kind, ...o };
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
}

/** A Table of `items` (a list, or one object). */
export function toTable(
  d: ResourceDef,
  items: Doc[],
  resourceVersion: string,
  include: IncludeObject,
  now = Date.now(),
): Doc {
  const printer = PRINTERS[d.kind]!;
  const rows = items.map((o) => {
    const object = rowObject(d, o, include);
    return { cells: printer.row(o, now), ...(object ? { object } : {}) };
  });
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion },
    columnDefinitions: printer.columns,
    rows,
  };
}
