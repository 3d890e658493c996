/**
 * The CNI work, done inside the agent: ADD, DEL, CHECK, GC, STATUS for requests the
 * plugin forwards (net/cni/plugin.ts). Everything here is synchronous, so attachments
 * on a node change one at a time and concurrent ADDs cannot race.
 *
 * Deleting a veth costs the kernel an RCU grace period (~20 ms here), longer than the
 * whole rest of a DEL. So DEL takes the pod's interface down, strips its addresses and
 * renames it out of the way inside the pod (CNI_IFNAME is free again at once, as the
 * spec wants), moves the host end into PENDING_GROUP and releases the address. Usually the runtime
 * deletes the pod's namespace next, which destroys the pair for free; whatever is left
 * a second later goes in one request for the whole group (one grace period for every
 * DEL of a burst). An ADD that needs a pending name deletes the group first.
 */
import type { NetHost } from "../host/host.ts";
import type { NetnsCheck } from "../host/netns.ts";
import { RangeFullError, type Allocator } from "../ipam/allocator.ts";
import { macForIp, numToIp, withPrefix } from "../cidr.ts";
import { CniCode, CniError } from "../cni/errors.ts";
import type { NetConf } from "../cni/config.ts";
import type { Result } from "../cni/result.ts";
import type { CniReply, CniRequest } from "../cni/wire.ts";
import type { Admission } from "../host/npc-admission.ts";

/** Link group of host veths waiting to be deleted ("we" in ASCII). */
export const PENDING_GROUP = 0x7765;
export const PENDING_DELETE_DELAY_MS = 1000;

export type ExecDeps = {
  host: NetHost;
  openHost(netns: string): NetHost;
  checkNetns(path: string): NetnsCheck;
  allocator(): Allocator | undefined;
  log(msg: string): void;
  /** Schedules the group delete; tests run it at once. */
  defer(fn: () => void): void;
  /** weave npc's pending entries for a new pod (net/host/npc-admission.ts); none without it. */
  admission?: Admission;
};

/** Host-side veth name for an attachment: "vethwepl" + 7 hex of a hash (15 chars). */
export function hostVethName(containerId: string, ifname: string): string {
  return `vethwepl${new Bun.CryptoHasher("sha256").update(`${containerId}/${ifname}`).digest("hex").slice(0, 7)}`;
}

export class CniExecutor {
  private pending = new Set<string>();
  private flushScheduled = false;

  constructor(private d: ExecDeps) {}

  run(req: CniRequest): CniReply {
    try {
      switch (req.command) {
        case "ADD":
          return { ok: true, result: this.add(req) };
        case "DEL":
          this.del(req);
          return { ok: true };
        case "CHECK":
          this.check(req);
          return { ok: true };
        case "GC":
          this.gc(req.conf);
          return { ok: true };
        case "STATUS":
          this.status(req.conf);
          return { ok: true };
        default:
          throw new CniError(
            CniCode.InvalidEnvironment,
            `CNI_COMMAND "${(req as { command: string }).command}" is not handled by the agent`,
          );
      }
    } catch (err) {
      const ce =
        err instanceof CniError
          ? err
          : new CniError(CniCode.Internal, `unexpected error in ${req.command}: ${(err as Error)?.message ?? err}`);
      if (!(err instanceof CniError)) this.d.log(`${req.command} ${req.containerId}: ${(err as Error)?.stack ?? err}`);
      return { ok: false, code: ce.code, msg: ce.message, ...(ce.details ? { details: ce.details } : {}) };
    }
  }

  /** Delete every pending host veth now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.size === 0) return;
    this.d.host.delLinkGroup(PENDING_GROUP);
    this.pending.clear();
  }

  /** Remove links left pending by an earlier run of the agent. */
  flushLeftovers(): void {
    if (this.d.host.links().some((l) => l.group === PENDING_GROUP)) this.d.host.delLinkGroup(PENDING_GROUP);
  }

  private retire(index: number, name: string): void {
    this.d.host.setLink(index, { up: false, group: PENDING_GROUP });
    this.pending.add(name);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.d.defer(() => this.flush());
    }
  }

  private allocator(): Allocator {
    const a = this.d.allocator();
    if (!a) throw new CniError(CniCode.TryAgainLater, "the weave agent is still starting; try again later");
    return a;
  }

  /** CNI_NETNS as the plugin sees it: through its /proc/<pid>/root when we know its pid. */
  private netns(req: CniRequest): string | undefined {
    if (!req.netns) return undefined;
    if (req.pid) {
      const viaPid = `/proc/${req.pid}/root${req.netns}`;
      if (this.d.checkNetns(viaPid).ok) return viaPid;
    }
    return this.d.checkNetns(req.netns).ok ? req.netns : undefined;
  }

  private requireNetns(req: CniRequest): string {
    const ns = this.netns(req);
    if (ns) return ns;
    const c = this.d.checkNetns(req.netns);
    throw new CniError(CniCode.InvalidEnvironment, `CNI_NETNS "${req.netns}" ${c.ok ? "cannot be opened" : c.reason}`);
  }

  /** The bridge and its gateway address: both made by the agent, so missing means "later". */
  private bridge(conf: NetConf): { index: number; mtu: number; mac: string; gateway: string } {
    const br = this.d.host.link(conf.bridge);
    if (!br)
      throw new CniError(
        CniCode.TryAgainLater,
        `bridge "${conf.bridge}" does not exist yet; the weave agent creates it when it starts, try again later`,
      );
    const addr = this.d.host.addrs(br.index)[0];
    if (!addr) throw new CniError(CniCode.TryAgainLater, `bridge "${conf.bridge}" has no address yet; try again later`);
    return { index: br.index, mtu: br.mtu, mac: br.mac, gateway: addr.cidr.split("/")[0]! };
  }

  private add(req: CniRequest): Result {
    const ns = this.requireNetns(req);
    const host = this.d.host;
    const ctr = this.d.openHost(ns);
    const alloc = this.allocator();
    const undo: (() => void)[] = [];
    const vethName = hostVethName(req.containerId, req.ifname);
    // A DEL of this same attachment may have left its pair pending: finish it first.
    if (this.pending.has(vethName)) this.flush();
    try {
      if (ctr.link(req.ifname))
        throw new CniError(
          CniCode.InvalidEnvironment,
          `CNI_IFNAME "${req.ifname}" already exists in CNI_NETNS "${req.netns}"`,
        );
      const br = this.bridge(req.conf);
      const pod =
        req.args.K8S_POD_NAMESPACE && req.args.K8S_POD_NAME
          ? `${req.args.K8S_POD_NAMESPACE}/${req.args.K8S_POD_NAME}`
          : undefined;
      let got: ReturnType<typeof alloc.allocate>;
      try {
        got = alloc.allocate(req.containerId, req.ifname, pod);
      } catch (e) {
        if (e instanceof RangeFullError)
          throw new CniError(
            CniCode.TryAgainLater,
            `${e.message}; peers were asked for space and have not given any yet, try again later`,
          );
        throw e;
      }
      const { entry, created } = got;
      if (created) undo.push(() => void alloc.release(req.containerId, req.ifname));
      const address = withPrefix(entry.address, alloc.range);
      this.admit(numToIp(entry.address), req.args.K8S_POD_NAMESPACE, undo);

      const mac = macForIp(entry.address);
      const mtu = req.conf.mtu ?? br.mtu;
      const veth = host.addVeth({ name: vethName, mtu, peer: { name: req.ifname, netns: ns, mac } });
      undo.push(() => void host.delLink(vethName));
      host.setLink(veth.index, { master: br.index, up: true });
      if (req.conf.hairpinMode) host.setHairpin(veth.index, true);

      const link = ctr.link(req.ifname);
      if (!link)
        throw new CniError(CniCode.Internal, `${req.ifname} is missing in ${req.netns} right after creating it`);
      ctr.setLink(link.index, { up: true });
      ctr.addAddr(link.index, address);
      ctr.addRoute({ dst: "0.0.0.0/0", gw: br.gateway, dev: link.index });

      undo.length = 0;
      this.d.log(`ADD ${req.containerId}/${req.ifname}${pod ? ` (${pod})` : ""}: ${address} on ${vethName}`);
      return {
        interfaces: [
          { name: req.conf.bridge, mac: br.mac },
          { name: vethName, mac: veth.mac, mtu },
          { name: req.ifname, mac, mtu, sandbox: req.netns },
        ],
        ips: [{ address, gateway: br.gateway, interface: 2 }],
        routes: [{ dst: "0.0.0.0/0", gw: br.gateway }],
        ...(req.conf.dns ? { dns: req.conf.dns } : {}),
      };
    } catch (err) {
      for (const step of undo.reverse()) {
        try {
          step();
        } catch (u) {
          this.d.log(`ADD ${req.containerId}: rollback step failed: ${(u as Error).message}`);
        }
      }
      throw err;
    } finally {
      ctr.close();
    }
  }

  /**
   * Before any packet can flow: the pod's address into weave npc's pending maps, so a pod
   * of a namespace with policies starts closed (see net/host/npc-admission.ts).
   */
  private admit(ip: string, namespace: string | undefined, undo: (() => void)[]): void {
    const admission = this.d.admission;
    if (!admission || !namespace) return;
    if (admission.admit(ip, namespace)) undo.push(() => admission.release(ip));
  }

  private del(req: CniRequest): void {
    const alloc = this.allocator();
    // Cut the pod off before its address can be handed out again.
    const vethName = hostVethName(req.containerId, req.ifname);
    const veth = this.d.host.link(vethName);
    const ns = this.netns(req);
    if (ns && veth) {
      const ctr = this.d.openHost(ns);
      try {
        const l = ctr.link(req.ifname);
        if (l) {
          ctr.setLink(l.index, { up: false });
          for (const a of ctr.addrs(l.index)) ctr.delAddr(l.index, a.cidr);
          ctr.setLink(l.index, { name: `wdel${vethName.slice(8)}` });
        }
      } finally {
        ctr.close();
      }
    }
    if (veth && veth.group !== PENDING_GROUP) this.retire(veth.index, vethName);
    const gone = alloc.release(req.containerId, req.ifname);
    for (const e of gone) this.d.admission?.release(numToIp(e.address));
    if (gone.length)
      this.d.log(
        `DEL ${req.containerId}/${req.ifname}: released ${gone.map((e) => withPrefix(e.address, alloc.range)).join(", ")}`,
      );
  }

  private check(req: CniRequest): void {
    const ns = this.requireNetns(req);
    const prev = req.conf.prevResult!;
    const fail = (msg: string) => new CniError(CniCode.CheckFailed, msg);
    const idx = prev.interfaces.findIndex((i) => i.name === req.ifname && i.sandbox === req.netns);
    if (idx < 0) throw fail(`prevResult lists no interface "${req.ifname}" in sandbox "${req.netns}"`);
    const want = prev.interfaces[idx]!;
    const ips = prev.ips.filter((ip) => ip.interface === idx);

    const ctr = this.d.openHost(ns);
    try {
      const link = ctr.link(req.ifname);
      if (!link) throw fail(`interface "${req.ifname}" is missing in ${req.netns}`);
      if (want.mac && link.mac !== want.mac)
        throw fail(`interface "${req.ifname}" has MAC ${link.mac}, prevResult says ${want.mac}`);
      if (!link.up) throw fail(`interface "${req.ifname}" is down`);
      const have = ctr.addrs(link.index).map((a) => a.cidr);
      for (const ip of ips)
        if (!have.includes(ip.address))
          throw fail(`address ${ip.address} is not on "${req.ifname}" (it has ${have.join(", ") || "none"})`);
      const routes = ctr.routes();
      for (const r of prev.routes) {
        if (!routes.some((k) => k.dst === r.dst && (r.gw === undefined || k.gw === r.gw)))
          throw fail(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is missing in ${req.netns}`);
      }
    } finally {
      ctr.close();
    }
    const br = this.d.host.link(req.conf.bridge);
    const vethName = hostVethName(req.containerId, req.ifname);
    const veth = this.d.host.link(vethName);
    if (!br) throw fail(`bridge "${req.conf.bridge}" is missing`);
    if (!veth || veth.master !== br.index || !veth.up)
      throw fail(`host interface ${vethName} is missing, down or not on bridge "${req.conf.bridge}"`);
    const alloc = this.allocator();
    const held = alloc.lookup(req.containerId).find((e) => e.ifname === req.ifname);
    if (!held) throw fail(`the weave agent holds no address for ${req.containerId}/${req.ifname}`);
    const heldCidr = withPrefix(held.address, alloc.range);
    if (ips.length && !ips.some((ip) => ip.address === heldCidr))
      throw fail(
        `the weave agent holds ${heldCidr} for ${req.containerId}, prevResult says ${ips.map((i) => i.address).join(", ")}`,
      );
  }

  private gc(conf: NetConf): void {
    const alloc = this.allocator();
    const valid = new Set(conf.validAttachments!.map((a) => `${a.containerID}/${a.ifname}`));
    const keep = new Set(conf.validAttachments!.map((a) => hostVethName(a.containerID, a.ifname)));
    for (const e of alloc.list()) {
      if (e.containerId.startsWith("weave:") || valid.has(`${e.containerId}/${e.ifname}`)) continue;
      alloc.release(e.containerId, e.ifname);
      this.d.log(`GC: released ${withPrefix(e.address, alloc.range)} of ${e.containerId}/${e.ifname}`);
    }
    const br = this.d.host.link(conf.bridge);
    if (!br) return;
    for (const l of this.d.host.links()) {
      if (l.master !== br.index || !l.name.startsWith("vethwepl") || keep.has(l.name) || l.group === PENDING_GROUP)
        continue;
      this.retire(l.index, l.name);
      this.d.log(`GC: removing stale ${l.name}`);
    }
  }

  private status(conf: NetConf): void {
    const br = this.d.host.link(conf.bridge);
    if (!br?.up)
      throw new CniError(
        CniCode.NotAvailableLimited,
        `bridge "${conf.bridge}" is missing or down; existing pods may have lost connectivity`,
      );
    const alloc = this.allocator();
    if (alloc.active >= alloc.capacity)
      throw new CniError(CniCode.NotAvailable, `no free address left in ${withPrefix(alloc.range.base, alloc.range)}`);
  }
}
