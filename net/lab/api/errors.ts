/**
 * API failures, answered as `Status` objects with the API's reasons and message shapes:
 * `pods "x" not found`, `Pod "x" is invalid: spec.containers: Required value`.
 */
import type { Doc } from "./json.ts";
import { qualified, type ResourceDef } from "./resources.ts";

/** One cause of a 422 Invalid, as the API lists them in `details.causes`. */
export interface Cause {
  /** The API's cause type: FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ... */
  reason: string;
  /** `spec.containers[0].name: Required value` without the field. */
  message: string;
  field: string;
}

/** An API failure, answered as a `Status` object. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Doc,
  ) {
    super(message);
    this.name = "ApiError";
  }

  toStatus(): Doc {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      details: this.details,
      code: this.code,
    };
  }
}

// NotFound, AlreadyExists and Conflict name the resource (`pods`); Invalid names the kind (`Pod`), as the API does.
const details = (d: ResourceDef, name?: string) => ({ name, group: d.group || undefined, kind: d.plural });
const kindDetails = (d: ResourceDef, name?: string) => ({ name, group: d.group || undefined, kind: d.kind });

export const notFound = (d: ResourceDef, name: string) =>
  new ApiError(404, "NotFound", `${qualified(d)} "${name}" not found`, details(d, name));

export const alreadyExists = (d: ResourceDef, name: string) =>
  new ApiError(409, "AlreadyExists", `${qualified(d)} "${name}" already exists`, details(d, name));

export const conflict = (d: ResourceDef, name: string) =>
  new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(d)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(d, name),
  );

export const badRequest = (message: string) => new ApiError(400, "BadRequest", message);

export const methodNotAllowed = () =>
  new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");

export const noSuchPath = () => new ApiError(404, "NotFound", "the server could not find the requested resource");

/** 422 Invalid from a free-form message (`field: Required value: ...`). */
export const invalid = (d: ResourceDef, name: string | undefined, message: string) =>
  new ApiError(422, "Invalid", `${d.kind} "${name ?? ""}" is invalid: ${message}`, kindDetails(d, name));

/** 422 Invalid from field causes; the message joins them as the API does (`[a, b]` when more than one). */
export function invalidFields(d: ResourceDef, name: string | undefined, causes: Cause[]): ApiError {
  const texts = causes.map((c) => `${c.field}: ${c.message}`);
  const joined = texts.length === 1 ? texts[0]! : `[${texts.join(", ")}]`;
  const err = new ApiError(422, "Invalid", `${d.kind} "${name ?? ""}" is invalid: ${joined}`, {
    ...kindDetails(d, name),
    causes,
  });
  return err;
}
