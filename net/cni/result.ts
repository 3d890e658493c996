/**
 * CNI results: one internal shape (the 1.x one), converted to the caller's version on
 * the way out, and read from any supported version on the way in (prevResult).
 */
import { CniCode, CniError } from "./errors.ts";
import { compareVersions } from "./version.ts";

export type Interface = { name: string; mac?: string; mtu?: number; sandbox?: string };
export type IpConfig = { address: string; gateway?: string; interface?: number };
export type RouteConfig = { dst: string; gw?: string };
export type Dns = { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
export type Result = { interfaces: Interface[]; ips: IpConfig[]; routes: RouteConfig[]; dns?: Dns };

/** Append `ours` to a previous plugin's result, shifting our interface indexes past its. */
export function chainResult(prev: Result | undefined, ours: Result): Result {
  if (!prev) return ours;
  const shift = prev.interfaces.length;
  return {
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [
      ...prev.ips,
      ...ours.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + shift })),
    ],
    routes: [...prev.routes, ...ours.routes],
    dns: prev.dns ?? ours.dns,
  };
}

/** Render `r` as the JSON object of spec version `v`. */
export function resultForVersion(r: Result, v: string): Record<string, unknown> {
  const pre1 = compareVersions(v, "1.0.0") < 0;
  const withMtu = compareVersions(v, "1.1.0") >= 0;
  const out: Record<string, unknown> = {
    cniVersion: v,
    interfaces: r.interfaces.map(({ mtu, ...i }) => (withMtu && mtu !== undefined ? { ...i, mtu } : i)),
    ips: r.ips.map((ip) => (pre1 ? { version: ip.address.includes(":") ? "6" : "4", ...ip } : ip)),
    routes: r.routes,
  };
  if (r.dns && Object.keys(r.dns).length > 0) out.dns = r.dns;
  return out;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

function bad(field: string, value: unknown, want: string): CniError {
  return new CniError(CniCode.InvalidConfig, `prevResult.${field} is ${JSON.stringify(value)}, expected ${want}`);
}

/** Read a prevResult of any supported version into the internal shape. */
export function parseResult(raw: unknown): Result {
  if (!isObj(raw)) throw bad("", raw, "an object");
  const list = (k: string) => {
    const v = raw[k] ?? [];
    if (!Array.isArray(v)) throw bad(k, v, "a list");
    return v as unknown[];
  };
  const str = (o: Record<string, unknown>, k: string, where: string, optional = true) => {
    const v = o[k];
    if (v === undefined && optional) return undefined;
    if (typeof v !== "string") throw bad(`${where}.${k}`, v, "a string");
    return v;
  };
  const interfaces = list("interfaces").map((x, i) => {
    if (!isObj(x)) throw bad(`interfaces[${i}]`, x, "an object");
    const mtu = x.mtu;
    if (mtu !== undefined && typeof mtu !== "number") throw bad(`interfaces[${i}].mtu`, mtu, "a number");
    return {
      name: str(x, "name", `interfaces[${i}]`, false)!,
      mac: str(x, "mac", `interfaces[${i}]`),
      sandbox: str(x, "sandbox", `interfaces[${i}]`),
      ...(mtu !== undefined ? { mtu } : {}),
    };
  });
  const ips = list("ips").map((x, i) => {
    if (!isObj(x)) throw bad(`ips[${i}]`, x, "an object");
    const idx = x.interface;
    if (
      idx !== undefined &&
      (typeof idx !== "number" || !Number.isInteger(idx) || idx < 0 || idx >= interfaces.length)
    ) {
      throw bad(`ips[${i}].interface`, idx, `an index below ${interfaces.length}`);
    }
    return {
      address: str(x, "address", `ips[${i}]`, false)!,
      gateway: str(x, "gateway", `ips[${i}]`),
      interface: idx as number | undefined,
    };
  });
  const routes = list("routes").map((x, i) => {
    if (!isObj(x)) throw bad(`routes[${i}]`, x, "an object");
    return { dst: str(x, "dst", `routes[${i}]`, false)!, gw: str(x, "gw", `routes[${i}]`) };
  });
  const dns = raw.dns;
  if (dns !== undefined && !isObj(dns)) throw bad("dns", dns, "an object");
  return {
    interfaces: interfaces.map(dropUndefined),
    ips: ips.map(dropUndefined),
    routes: routes.map(dropUndefined),
    ...(dns ? { dns: dns as Dns } : {}),
  };
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
