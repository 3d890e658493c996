/** CNI spec versions: which we speak, and how to compare them. */
import { CniCode, CniError } from "./errors.ts";

export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export const CURRENT_VERSION = "1.1.0";

export function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Negative, zero or positive as a < b, a == b, a > b (both must parse). */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a)!;
  const y = parseVersion(b)!;
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
}

/** Refuse a cniVersion we cannot speak, naming it and what we do speak. */
export function requireSupported(v: unknown, field = "cniVersion"): string {
  if (typeof v !== "string" || v === "") {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `${field} is missing or not a string (got ${JSON.stringify(v)}); supported: ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    const why = parseVersion(v) && compareVersions(v, SUPPORTED_VERSIONS[0]) < 0 ? "is too old" : "is not supported";
    throw new CniError(
      CniCode.IncompatibleVersion,
      `${field} "${v}" ${why}; supported: ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  return v;
}

/** Commands that only exist from some version on. */
export const COMMAND_SINCE: Record<string, string> = { CHECK: "0.4.0", GC: "1.1.0", STATUS: "1.1.0" };
