/**
 * What `weave install` can vary in the manifests, with Weave's setting names, and how
 * flags and the installer's environment become those settings. Pure: the same input
 * always renders the same manifests (nothing here looks at a cluster or a clock).
 */
import { CidrError, parseCidr } from "../net/cidr.ts";
import { WeaveError } from "../net/errors.ts";
import { VERSION } from "../net/version.ts";

/** Where everything goes. Fixed: the agent and RBAC assume it. */
export const NAMESPACE = "kube-system";
/** The name of every object install makes (ServiceAccount, roles, ConfigMap, DaemonSet). */
export const NAME = "weave-net";
/** The key of the password in the Secret named by `passwordSecret`. */
export const PASSWORD_KEY = "weave-password";
/** Where the Dockerfile puts the binary in the image. */
export const IMAGE_BINARY = "/usr/local/bin/weave";
/** A pinned tag, never :latest. No registry hosts it: build it (manifests/Dockerfile) and pass --image. */
export const DEFAULT_IMAGE = `weave:${VERSION}`;
export const DEFAULT_RANGE = "10.32.0.0/12";
/** The label value that marks an object as made by `weave install` (uninstall deletes only those). */
export const MANAGED_BY = "weave";

/** The settings the manifests are rendered from. */
export interface ManifestSettings {
  /** Image of the init and agent containers. */
  image: string;
  /** IPALLOC_RANGE: the pod address range. */
  ipallocRange: string;
  /** WEAVE_MTU: the overlay MTU; unset, each agent uses its underlay MTU - 50. */
  mtu?: number;
  /**
   * A Secret holding WEAVE_PASSWORD (key `weave-password`), rendered with this password
   * (its bytes as read: `data`, base64); the agent's env takes it by secretKeyRef.
   */
  passwordSecret?: { name: string; password: Uint8Array };
  /** CONN_LIMIT: most mesh connections; unset, the agent's default (200). */
  connLimit?: number;
  /** NO_MASQ_LOCAL: keep client source addresses for traffic to local pods (Weave's default since 2.7). */
  noMasqLocal: boolean;
  /** EXTRA_ARGS: more `weave agent` flags, split on blanks. */
  extraArgs?: string;
  readonly namespace: typeof NAMESPACE;
}

/** Settings with the defaults filled in. */
export function manifestSettings(s: Partial<Omit<ManifestSettings, "namespace">> = {}): ManifestSettings {
  return { image: DEFAULT_IMAGE, ipallocRange: DEFAULT_RANGE, noMasqLocal: true, ...s, namespace: NAMESPACE };
}

/** The install flags that are settings (cac's camelCase names). */
export interface SettingFlags {
  image?: unknown;
  ipallocRange?: unknown;
  mtu?: unknown;
  connLimit?: unknown;
  /** `--masq-local`: masquerade traffic to local pods too (NO_MASQ_LOCAL=0). */
  masqLocal?: unknown;
  extraArgs?: unknown;
}

/**
 * Settings from flags, else the installer's environment under Weave's names
 * (IPALLOC_RANGE, WEAVE_MTU, CONN_LIMIT, NO_MASQ_LOCAL, EXTRA_ARGS, and WEAVE_IMAGE),
 * else the defaults. Bad values are E_BAD_FLAG errors naming the flag or variable.
 */
export function settingsFrom(flags: SettingFlags, env: Record<string, string | undefined>): ManifestSettings {
  const pick = (flag: unknown, name: string) => (flag !== undefined ? { v: flag, src: `--${name}` } : undefined);
  const fromEnv = (name: string) =>
    env[name] !== undefined && env[name] !== "" ? { v: env[name], src: name } : undefined;

  const image = pick(flags.image, "image") ?? fromEnv("WEAVE_IMAGE");
  const range = pick(flags.ipallocRange, "ipalloc-range") ?? fromEnv("IPALLOC_RANGE");
  const mtu = pick(flags.mtu, "mtu") ?? fromEnv("WEAVE_MTU");
  const conn = pick(flags.connLimit, "conn-limit") ?? fromEnv("CONN_LIMIT");
  const extra = pick(flags.extraArgs, "extra-args") ?? fromEnv("EXTRA_ARGS");
  const masq = flags.masqLocal ? { v: "0", src: "--masq-local" } : fromEnv("NO_MASQ_LOCAL");

  const s: Partial<Omit<ManifestSettings, "namespace">> = {};
  if (image) s.image = imageRef(image.v, image.src);
  if (range) s.ipallocRange = cidr(range.v, range.src);
  if (mtu) s.mtu = integer(mtu.v, mtu.src, 576, 65535);
  if (conn) s.connLimit = integer(conn.v, conn.src, 0, 100000);
  if (extra) s.extraArgs = text(extra.v, extra.src);
  if (masq) s.noMasqLocal = bool(masq.v, masq.src);
  return manifestSettings(s);
}

/**
 * The name of `--password-secret`: a Secret's name is a DNS subdomain (RFC 1123:
 * lowercase letters, digits, '-' and '.', at most 253 characters).
 */
export function secretName(v: unknown, src = "--password-secret"): string {
  const s = text(v, src);
  if (s.length > 253 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s))
    throw bad(src, v, "is not a Secret name (lowercase letters, digits, '-' and '.'; like weave-passwd)");
  return s;
}

const bad = (src: string, v: unknown, why: string) =>
  new WeaveError("E_BAD_FLAG", `${src} ${JSON.stringify(v)} ${why}`);

function text(v: unknown, src: string): string {
  // cac turns a flag given without a value into `true`
  if (typeof v !== "string" && typeof v !== "number") throw bad(src, v, "needs a value");
  return String(v);
}

function imageRef(v: unknown, src: string): string {
  const s = text(v, src);
  if (!/^[a-z0-9][a-z0-9._\-/:@]*$/i.test(s))
    throw bad(src, v, "is not an image reference (like registry.example/weave:0.1.0)");
  return s;
}

function cidr(v: unknown, src: string): string {
  const s = text(v, src);
  try {
    const c = parseCidr(s);
    if (c.prefix > 30) throw bad(src, v, "is too small (at most /30)");
  } catch (e) {
    if (e instanceof CidrError) throw new WeaveError("E_BAD_RANGE", `${src} ${e.message}`);
    throw e;
  }
  return s;
}

function integer(v: unknown, src: string, min: number, max: number): number {
  const n = Number(text(v, src));
  if (!Number.isInteger(n) || n < min || n > max) throw bad(src, v, `is not an integer from ${min} to ${max}`);
  return n;
}

function bool(v: unknown, src: string): boolean {
  const s = text(v, src).toLowerCase();
  if (["1", "true", "yes", "on"].includes(s)) return true;
  if (["0", "false", "no", "off"].includes(s)) return false;
  throw bad(src, v, "is not one of 1/true/yes/on or 0/false/no/off");
}
