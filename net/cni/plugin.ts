/**
 * The weave-net CNI plugin: ADD, DEL, CHECK, GC, STATUS, VERSION.
 *
 * `runPlugin` takes the environment, stdin and its effects (host layer, namespace check,
 * agent client) as arguments and returns what to print and the exit code, so tests call
 * it without touching process state. The one place that turns an unexpected exception
 * into code 999 is at the bottom of `runPlugin`.
 */
import type { NetHost } from "../host/host.ts";
import type { NetnsCheck } from "../host/netns.ts";
import type { Allocation } from "../host/agent-client.ts";
import { ipToNum, macForIp } from "../cidr.ts";
import { CniCode, CniError } from "./errors.ts";
import { parseEnv, parseNetConf, type CniEnv, type NetConf } from "./config.ts";
import { chainResult, resultForVersion, type Result } from "./result.ts";
import { CURRENT_VERSION, SUPPORTED_VERSIONS } from "./version.ts";

export interface AgentApi {
  allocate(containerId: string, ifname: string, pod?: string): Promise<{ address: string; created: boolean }>;
  release(containerId: string, ifname?: string): Promise<void>;
  list(): Promise<Allocation[]>;
  status(): Promise<{ ready: boolean; text: string }>;
}

export type PluginDeps = {
  openHost(netns?: string): NetHost;
  checkNetns(path: string): NetnsCheck;
  agent: AgentApi;
  log(msg: string): void;
};

export type PluginOutput = { stdout: string; exitCode: number };

/** Host-side veth name for an attachment: "vethwepl" + 7 hex of a hash (15 chars). */
export function hostVethName(containerId: string, ifname: string): string {
  return "vethwepl" + new Bun.CryptoHasher("sha256").update(`${containerId}/${ifname}`).digest("hex").slice(0, 7);
}

export async function runPlugin(env: Record<string, string | undefined>, stdin: string, deps: PluginDeps): Promise<PluginOutput> {
  let version = CURRENT_VERSION;
  try {
    const e = parseEnv(env);
    if (e.command === "VERSION") return ok({ cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] });
    const conf = parseNetConf(stdin, e.command);
    version = conf.cniVersion;
    switch (e.command) {
      case "ADD":
        return ok(resultForVersion(chainResult(conf.prevResult, await add(e, conf, deps)), version));
      case "DEL":
        await del(e, conf, deps);
        return ok();
      case "CHECK":
        await check(e, conf, deps);
        return ok();
      case "GC":
        await gc(conf, deps);
        return ok();
      case "STATUS":
        await status(conf, deps);
        return ok();
    }
  } catch (err) {
    if (!(err instanceof CniError)) {
      deps.log(`unexpected error: ${(err as Error)?.stack ?? err}`);
      err = new CniError(CniCode.Internal, `unexpected error: ${(err as Error)?.message ?? err}`);
    }
    const ce = err as CniError;
    deps.log(`error ${ce.code}: ${ce.message}`);
    // The spec's error object: in the config's version when we got that far.
    const v = (SUPPORTED_VERSIONS as readonly string[]).includes(version) ? version : CURRENT_VERSION;
    return { stdout: JSON.stringify(ce.toJSON(v)) + "\n", exitCode: 1 };
  }
}

function ok(body?: unknown): PluginOutput {
  return { stdout: body === undefined ? "" : JSON.stringify(body) + "\n", exitCode: 0 };
}

function requireNetns(e: CniEnv, deps: PluginDeps): void {
  const c = deps.checkNetns(e.netns);
  if (!c.ok) throw new CniError(CniCode.InvalidEnvironment, `CNI_NETNS "${e.netns}" ${c.reason}`);
}

/** The bridge and its gateway address: both made by the agent, so missing means "later". */
function bridgeOf(host: NetHost, conf: NetConf): { index: number; mtu: number; gateway: string } {
  const br = host.link(conf.bridge);
  if (!br) throw new CniError(CniCode.TryAgainLater, `bridge "${conf.bridge}" does not exist yet; the weave agent creates it when it starts, try again later`);
  const addr = host.addrs(br.index)[0];
  if (!addr) throw new CniError(CniCode.TryAgainLater, `bridge "${conf.bridge}" has no address yet; the weave agent gives it one when it is ready, try again later`);
  return { index: br.index, mtu: br.mtu, gateway: addr.cidr.split("/")[0]! };
}

function podName(e: CniEnv): string | undefined {
  const ns = e.args.K8S_POD_NAMESPACE;
  const name = e.args.K8S_POD_NAME;
  return ns && name ? `${ns}/${name}` : undefined;
}

async function add(e: CniEnv, conf: NetConf, deps: PluginDeps): Promise<Result> {
  requireNetns(e, deps);
  const host = deps.openHost();
  const ctr = deps.openHost(e.netns);
  const undo: (() => Promise<void> | void)[] = [];
  try {
    if (ctr.link(e.ifname)) throw new CniError(CniCode.InvalidEnvironment, `CNI_IFNAME "${e.ifname}" already exists in CNI_NETNS "${e.netns}"`);
    const br = bridgeOf(host, conf);
    const { address, created } = await deps.agent.allocate(e.containerId, e.ifname, podName(e));
    if (created) undo.push(() => deps.agent.release(e.containerId, e.ifname));

    const ip = ipToNum(address.split("/")[0]!);
    const mac = macForIp(ip);
    const mtu = conf.mtu ?? br.mtu;
    const vethName = hostVethName(e.containerId, e.ifname);
    const veth = host.addVeth({ name: vethName, mtu, peer: { name: e.ifname, netns: e.netns, mac } });
    undo.push(() => void host.delLink(vethName));
    host.setLink(veth.index, { master: br.index, up: true });
    if (conf.hairpinMode) host.setHairpin(veth.index, true);

    const link = ctr.link(e.ifname);
    if (!link) throw new CniError(CniCode.Internal, `${e.ifname} is missing in ${e.netns} right after creating it`);
    ctr.setLink(link.index, { up: true });
    ctr.addAddr(link.index, address);
    ctr.addRoute({ dst: "0.0.0.0/0", gw: br.gateway, dev: link.index });

    undo.length = 0;
    return {
      interfaces: [
        { name: conf.bridge, mac: host.link(conf.bridge)?.mac },
        { name: vethName, mac: host.link(vethName)?.mac, mtu },
        { name: e.ifname, mac, mtu, sandbox: e.netns },
      ],
      ips: [{ address, gateway: br.gateway, interface: 2 }],
      routes: [{ dst: "0.0.0.0/0", gw: br.gateway }],
      ...(conf.dns ? { dns: conf.dns } : {}),
    };
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (u) {
        deps.log(`rollback step failed: ${(u as Error).message}`);
      }
    }
    throw err;
  } finally {
    host.close();
    ctr.close();
  }
}

async function del(e: CniEnv, conf: NetConf, deps: PluginDeps): Promise<void> {
  // Remove the interface before releasing its address, so the address is never handed
  // out again while still configured somewhere.
  if (e.netns && deps.checkNetns(e.netns).ok) {
    const ctr = deps.openHost(e.netns);
    try {
      ctr.delLink(e.ifname);
    } finally {
      ctr.close();
    }
  }
  const host = deps.openHost();
  try {
    host.delLink(hostVethName(e.containerId, e.ifname));
  } finally {
    host.close();
  }
  await deps.agent.release(e.containerId, e.ifname);
}

async function check(e: CniEnv, conf: NetConf, deps: PluginDeps): Promise<void> {
  requireNetns(e, deps);
  const prev = conf.prevResult!;
  const fail = (msg: string) => new CniError(CniCode.CheckFailed, msg);
  const idx = prev.interfaces.findIndex((i) => i.name === e.ifname && i.sandbox === e.netns);
  if (idx < 0) throw fail(`prevResult lists no interface "${e.ifname}" in sandbox "${e.netns}"`);
  const want = prev.interfaces[idx]!;
  const ips = prev.ips.filter((ip) => ip.interface === idx);

  const host = deps.openHost();
  const ctr = deps.openHost(e.netns);
  try {
    const link = ctr.link(e.ifname);
    if (!link) throw fail(`interface "${e.ifname}" is missing in ${e.netns}`);
    if (want.mac && link.mac !== want.mac) throw fail(`interface "${e.ifname}" has MAC ${link.mac}, prevResult says ${want.mac}`);
    if (!link.up) throw fail(`interface "${e.ifname}" is down`);
    const have = ctr.addrs(link.index).map((a) => a.cidr);
    for (const ip of ips) if (!have.includes(ip.address)) throw fail(`address ${ip.address} is not on "${e.ifname}" (it has ${have.join(", ") || "none"})`);
    const routes = ctr.routes();
    for (const r of prev.routes) {
      if (!routes.some((k) => k.dst === r.dst && (r.gw === undefined || k.gw === r.gw))) throw fail(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is missing in ${e.netns}`);
    }
    const br = host.link(conf.bridge);
    const veth = host.link(hostVethName(e.containerId, e.ifname));
    if (!br) throw fail(`bridge "${conf.bridge}" is missing`);
    if (!veth || veth.master !== br.index) throw fail(`host interface ${hostVethName(e.containerId, e.ifname)} is missing or not on bridge "${conf.bridge}"`);
  } finally {
    host.close();
    ctr.close();
  }
  const held = (await deps.agent.list()).find((a) => a.containerId === e.containerId && a.ifname === e.ifname);
  if (!held) throw fail(`the weave agent holds no address for ${e.containerId}/${e.ifname}`);
  if (ips.length && !ips.some((ip) => ip.address === held.address)) throw fail(`the weave agent holds ${held.address} for ${e.containerId}, prevResult says ${ips.map((i) => i.address).join(", ")}`);
}

async function gc(conf: NetConf, deps: PluginDeps): Promise<void> {
  const valid = new Set(conf.validAttachments!.map((a) => `${a.containerID}/${a.ifname}`));
  const keepVeths = new Set(conf.validAttachments!.map((a) => hostVethName(a.containerID, a.ifname)));
  const errors: string[] = [];
  for (const a of await deps.agent.list()) {
    if (valid.has(`${a.containerId}/${a.ifname}`)) continue;
    try {
      await deps.agent.release(a.containerId, a.ifname);
      deps.log(`gc: released ${a.address} of ${a.containerId}/${a.ifname}`);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  const host = deps.openHost();
  try {
    const br = host.link(conf.bridge);
    for (const l of host.links()) {
      if (!br || l.master !== br.index || !l.name.startsWith("vethwepl") || keepVeths.has(l.name)) continue;
      host.delLink(l.name);
      deps.log(`gc: removed stale ${l.name}`);
    }
  } finally {
    host.close();
  }
  if (errors.length) throw new CniError(CniCode.TryAgainLater, `gc could not release every stale address: ${errors.join("; ")}`);
}

async function status(conf: NetConf, deps: PluginDeps): Promise<void> {
  const host = deps.openHost();
  let bridgeUp: boolean;
  try {
    bridgeUp = host.link(conf.bridge)?.up ?? false;
  } finally {
    host.close();
  }
  let agent: { ready: boolean; text: string };
  try {
    agent = await deps.agent.status();
  } catch (err) {
    const code = bridgeUp ? CniCode.NotAvailable : CniCode.NotAvailableLimited;
    throw new CniError(code, `${(err as Error).message}${bridgeUp ? "" : `; bridge "${conf.bridge}" is missing, existing pods may have lost connectivity`}`);
  }
  if (!bridgeUp) throw new CniError(CniCode.NotAvailableLimited, `bridge "${conf.bridge}" is missing or down; existing pods may have lost connectivity`);
  if (!agent.ready) throw new CniError(CniCode.NotAvailable, `weave agent is not ready: ${agent.text}`);
}
