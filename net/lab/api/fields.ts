/**
 * Server-side field validation (`fieldValidation=Strict|Warn|Ignore`) for the fields a
 * request's object has and the kind's schema does not. The API drops unknown fields
 * (Ignore, Warn) or refuses the request (Strict); Warn is the default, as in 1.27+.
 * Paths are written as the API writes them: `spec.containers[0].foo`.
 */
import { badRequest } from "./errors.ts";
import { type Doc, isObj } from "./json.ts";
import type { ResourceDef } from "./resources.ts";
import { kindSchema, type Schema } from "./schema.ts";

export type FieldValidation = "Strict" | "Warn" | "Ignore";

/** The `fieldValidation` query parameter; 400 on a value the API does not know. */
export function fieldValidationOf(q: URLSearchParams): FieldValidation {
  const v = q.get("fieldValidation") ?? "";
  if (v === "") return "Warn";
  if (v === "Strict" || v === "Warn" || v === "Ignore") return v;
  throw badRequest(`fieldValidation must be one of "Ignore", "Warn", or "Strict", got "${v}"`);
}

/** Removes the fields `schema` does not know from `o` (in place); returns their paths. */
export function pruneUnknown(o: unknown, schema: Schema | undefined, path = ""): string[] {
  if (!schema) return [];
  if (schema.type === "array" && Array.isArray(o))
    return o.flatMap((item, i) => pruneUnknown(item, schema.items, `${path}[${i}]`));
  if (schema.type === "map" && isObj(o))
    return Object.entries(o).flatMap(([k, v]) => pruneUnknown(v, schema.values, `${path}[${k}]`));
  if (schema.type !== "object" || !isObj(o)) return [];
  const unknown: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    const at = path ? `${path}.${k}` : k;
    const field = schema.props.get(k);
    if (!field) {
      unknown.push(at);
      delete o[k];
    } else unknown.push(...pruneUnknown(v, field, at));
  }
  return unknown;
}

/**
 * Applies a request's field validation to its object (in place): the unknown fields are
 * dropped; Strict refuses them with the API's decoding error, Warn returns the warnings.
 */
export function checkFields(d: ResourceDef, o: Doc, mode: FieldValidation, apply = false): string[] {
  const unknown = pruneUnknown(o, kindSchema(d.kind));
  if (unknown.length === 0 || mode === "Ignore") return [];
  if (mode === "Warn") return unknown.map((p) => `unknown field "${p}"`);
  if (apply) {
    const gvk = `${d.group}/${d.version}, Kind=${d.kind}`;
    const paths = unknown.map((p) => `.${p}: field not declared in schema`).join(", ");
    throw badRequest(`failed to create typed patch object (${gvk}): ${paths}`);
  }
  const fields = unknown.map((p) => `unknown field "${p}"`).join(", ");
  throw badRequest(
    `${d.kind} in version "${d.version}" cannot be handled as a ${d.kind}: strict decoding error: ${fields}`,
  );
}
