/**
 * What happens to an object an API request writes, before the store keeps it, in the
 * order the API does it: unknown fields (dropped, warned of or refused, per
 * `fieldValidation`), defaults, validation, the Service's clusterIP, and managedFields.
 * Objects put into the store directly (tests, the lab's kubelet) skip all of this.
 */
import { applyDefaults } from "./defaults.ts";
import { checkFields, type FieldValidation } from "./fields.ts";
import { clone, deepEqual, type Doc } from "./json.ts";
import { type ManagedWrite, updateManagedFields } from "./managed-fields.ts";
import type { ResourceDef } from "./resources.ts";
import { allocateClusterIP } from "./service-ips.ts";
import type { Store } from "./store.ts";
import { validateCreate, validateUpdate } from "./validation.ts";

/** Who writes and how: the field manager and operation, field validation, and the warnings to answer with. */
export interface WriteContext {
  write: ManagedWrite;
  fieldValidation: FieldValidation;
  warnings: string[];
  dryRun: boolean;
}

const usedClusterIPs = (store: Store, d: ResourceDef) =>
  new Set(store.items(d).flatMap((s) => (s.spec?.clusterIPs ?? [s.spec?.clusterIP]).filter(Boolean) as string[]));

/** A new object as the store should keep it (the request's namespace still to be applied by the store). */
export function admitCreate(store: Store, d: ResourceDef, body: Doc, ns: string | undefined, ctx: WriteContext): Doc {
  const o = clone(body);
  ctx.warnings.push(...checkFields(d, o, ctx.fieldValidation, ctx.write.operation === "Apply"));
  o.metadata ??= {};
  if (!o.metadata.name && o.metadata.generateName) o.metadata.name = o.metadata.generateName + randomSuffix();
  if (d.namespaced && !o.metadata.namespace) o.metadata.namespace = ns;
  applyDefaults(d, o, true);
  validateCreate(d, o);
  if (d.kind === "Service") allocateClusterIP(d, o, usedClusterIPs(store, d));
  o.metadata.managedFields = updateManagedFields(d, undefined, o, ctx.write);
  return o;
}

/** The replacement of `current` as the store should keep it; `sub` is "status" for a status write. */
export function admitUpdate(d: ResourceDef, current: Doc, next: Doc, sub: string | undefined, ctx: WriteContext): Doc {
  const o = clone(next);
  ctx.warnings.push(...checkFields(d, o, ctx.fieldValidation, ctx.write.operation === "Apply"));
  o.metadata ??= {};
  applyDefaults(d, o, false);
  if (d.kind === "Service" && current.spec?.clusterIP && !o.spec?.clusterIP) {
    o.spec.clusterIP = current.spec.clusterIP;
    o.spec.clusterIPs = current.spec.clusterIPs;
  }
  if (d.kind === "Namespace") o.status = o.status ?? current.status;
  // An object put into the store directly has no defaults: compare with what it would have had.
  const defaultedCurrent = applyDefaults(d, clone(current), false);
  if (sub !== "status") validateUpdate(d, defaultedCurrent, { ...o, metadata: { ...current.metadata, ...o.metadata } });
  const givenManaged = o.metadata.managedFields;
  const managedChangedByRequest =
    givenManaged !== undefined && !deepEqual(givenManaged, current.metadata.managedFields);
  if (!managedChangedByRequest) {
    const merged = sub === "status" ? { ...current, status: o.status } : o;
    o.metadata.managedFields = updateManagedFields(d, current, merged, { ...ctx.write, subresource: sub });
  }
  return o;
}

const randomSuffix = () => {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  return Array.from({ length: 5 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
};
