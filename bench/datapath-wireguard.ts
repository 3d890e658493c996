/**
 * The encrypted pairs of bench/datapath.ts: pod-to-pod VXLAN inside userspace WireGuard
 * (Debian's wireguard-go), built twice with the same shape and MTUs (underlay 1500,
 * WireGuard 1440, VXLAN, bridge and pods 1390):
 *
 * - the reference, by hand, as a user would: `wireguard-go <if>` (standard socket
 *   directory, so each host's interface has its own name, <lab>w1/<lab>w2), keys from
 *   `wg genkey`/`wg genpsk` in files of a temp dir, `wg set` naming those files (no key
 *   on a command line), `ip link add vxlan42 ... local/remote <tunnel address>`;
 * - ours, from the building blocks the agent uses: the key file (net/host/wg-key-file.ts),
 *   the plan (net/encap/wireguard.ts: tunnel addresses, PSKs from one secret), a
 *   supervised wireguard-go with a socket directory of its own (net/host/wireguard-go.ts),
 *   the fail-closed table, and a VXLAN device (UDP 6784, local = the tunnel address)
 *   bridged to the pod's veth through the host layer.
 *
 * Namespaces (<lab> = the bench's name): reference <lab>-wu (underlay bridge), -wh1/-wh2
 * (hosts, eth0 198.19.1.1/.2), -wp1/-wp2 (pods 10.201.0.1/.2); ours <lab>-eu, -eh1/-eh2
 * (198.19.2.1/.2), -ep1/-ep2 (pods 10.202.0.1/.2). Processes: the reference's
 * wireguard-go go into lib.ts's `running` (ended by pid on cleanup or a signal); ours are
 * ended by their supervisor's stop(), which the returned `stop` calls.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { desiredWireguard, encryptedMtus, tunnelAddress, tunnelCidr } from "../net/encap/wireguard.ts";
import { VXLAN_PORT, VXLAN_VNI } from "../net/encap/vxlan.ts";
import { openHost, type NetHost } from "../net/host/host.ts";
import { createNamedNetns, netnsPath } from "../net/host/netns.ts";
import { applyFailClosed } from "../net/host/wg-fail-closed.ts";
import { loadOrCreateWgKey } from "../net/host/wg-key-file.ts";
import { WireguardGo } from "../net/host/wireguard-go.ts";
import { BenchError, PATH, running } from "./lib.ts";

export const WG_MTUS = encryptedMtus({ underlay: 1500 });

export type EncryptedPair = {
  pods: [string, string];
  podIps: [string, string];
  /** Every namespace and its MTUs, to check and to print. */
  mtus: [string, string, number][];
  /** End the pair's processes (namespaces are removed by the caller, from `made`). */
  stop(): Promise<void>;
};

type Sh = (ns: string, cmd: string[], stdin?: string) => string;

const sh: Sh = (ns, cmd, stdin) => {
  const r = Bun.spawnSync(["nsenter", `--net=${netnsPath(ns)}`, ...cmd], {
    env: { PATH },
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new BenchError(`\`${cmd.join(" ")}\` in ${ns}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
};

/** Underlay bridge + two hosts on it; returns the host namespaces. */
function underlay(prefix: string, net: string, made: string[]): [string, string] {
  const [u, h1, h2] = [`${prefix}u`, `${prefix}h1`, `${prefix}h2`];
  for (const ns of [u, h1, h2]) {
    createNamedNetns(ns);
    made.push(ns);
  }
  sh(u, ["ip", "link", "add", "br0", "mtu", "1500", "type", "bridge"]);
  sh(u, ["ip", "link", "set", "br0", "up"]);
  for (const [i, h] of [h1, h2].entries()) {
    sh(u, ["ip", "link", "add", `h${i + 1}`, "type", "veth", "peer", "name", "eth0", "netns", netnsPath(h)]);
    sh(u, ["ip", "link", "set", `h${i + 1}`, "master", "br0", "up"]);
    sh(h, ["ip", "link", "set", "eth0", "mtu", "1500", "up"]);
    sh(h, ["ip", "addr", "add", `${net}.${i + 1}/24`, "dev", "eth0"]);
  }
  return [h1, h2];
}

/** A pod namespace with a veth to `bridge` in `host`, MTU of the overlay. */
function pod(host: string, bridge: string, ns: string, cidr: string, made: string[]): void {
  createNamedNetns(ns);
  made.push(ns);
  const mtu = String(WG_MTUS.overlay);
  sh(host, ["ip", "link", "add", "veth0", "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", netnsPath(ns)]);
  sh(host, ["ip", "link", "set", "veth0", "master", bridge, "up"]);
  sh(ns, ["ip", "link", "set", "eth0", "mtu", mtu, "up"]);
  sh(ns, ["ip", "addr", "add", cidr, "dev", "eth0"]);
}

async function waitFor(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (ok()) return;
    await Bun.sleep(20);
  }
  throw new BenchError(`${what} did not appear within 5 s`);
}

/** The hand-built reference pair. */
export async function buildWgReference(name: string, tmp: string, made: string[]): Promise<EncryptedPair> {
  const hosts = underlay(`${name}-w`, "198.19.1", made);
  const ifs = [`${name}w1`, `${name}w2`];
  const tunnel = ["192.168.250.1", "192.168.250.2"];
  const dir = join(tmp, "wg-ref");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = (file: string, text: string) => {
    writeFileSync(join(dir, file), text, { mode: 0o600 });
    return join(dir, file);
  };
  const wg = (args: string[], stdin?: string) => sh(hosts[0], ["wg", ...args], stdin).trim();
  // Keys travel by pipes and files only: genkey's stdout, pubkey's stdin, `wg set`'s file names.
  const privateKeys = [wg(["genkey"]), wg(["genkey"])];
  const priv = privateKeys.map((k, i) => keyFile(`k${i + 1}`, `${k}\n`));
  const pubs = privateKeys.map((k) => wg(["pubkey"], `${k}\n`));
  const psk = keyFile("psk", `${wg(["genpsk"])}\n`);
  const pids: number[] = [];
  for (const [i, h] of hosts.entries()) {
    const p = Bun.spawn(["nsenter", `--net=${netnsPath(h)}`, "wireguard-go", "-f", ifs[i]!], {
      env: { PATH, WG_PROCESS_FOREGROUND: "1", LOG_LEVEL: "error" },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    });
    running.add(p.pid);
    void p.exited.then(() => running.delete(p.pid));
    pids.push(p.pid);
    await waitFor(`wireguard-go ${ifs[i]}'s socket`, () => existsSync(`/var/run/wireguard/${ifs[i]}.sock`));
    const o = 1 - i;
    sh(h, ["wg", "set", ifs[i]!, "private-key", priv[i]!, "listen-port", "51820"]);
    sh(h, ["wg", "set", ifs[i]!, "peer", pubs[o]!, "preshared-key", psk, "endpoint", `198.19.1.${o + 1}:51820`]);
    sh(h, ["wg", "set", ifs[i]!, "peer", pubs[o]!, "allowed-ips", `${tunnel[o]}/32`, "persistent-keepalive", "25"]);
    sh(h, ["ip", "addr", "add", `${tunnel[i]}/24`, "dev", ifs[i]!]);
    sh(h, ["ip", "link", "set", ifs[i]!, "mtu", String(WG_MTUS.wireguard), "up"]);
    const mtu = String(WG_MTUS.overlay);
    sh(h, ["ip", "link", "add", "br0", "mtu", mtu, "type", "bridge"]);
    const vxlan = ["type", "vxlan", "id", "42", "dstport", "4789", "local", tunnel[i]!, "remote", tunnel[o]!];
    sh(h, ["ip", "link", "add", "vxlan42", "mtu", mtu, ...vxlan]);
    sh(h, ["ip", "link", "set", "vxlan42", "master", "br0", "up"]);
    pod(h, "br0", `${name}-wp${i + 1}`, `10.201.0.${i + 1}/24`, made);
    sh(h, ["ip", "link", "set", "br0", "up"]);
  }
  rmSync(dir, { recursive: true, force: true });
  const mtus = hosts.flatMap((h, i): [string, string, number][] => [
    [h, "eth0", 1500],
    [h, ifs[i]!, WG_MTUS.wireguard],
    [h, "vxlan42", WG_MTUS.overlay],
    [h, "br0", WG_MTUS.overlay],
    [`${name}-wp${i + 1}`, "eth0", WG_MTUS.overlay],
  ]);
  return {
    pods: [`${name}-wp1`, `${name}-wp2`],
    podIps: ["10.201.0.1", "10.201.0.2"],
    mtus,
    stop: async () => {
      for (const pid of pids) if (running.has(pid)) process.kill(pid, "SIGTERM");
      for (let i = 0; i < 100 && pids.some((p) => running.has(p)); i++) await Bun.sleep(20);
      for (const i of ifs) rmSync(`/var/run/wireguard/${i}.sock`, { force: true });
    },
  };
}

/** The same shape from our building blocks. */
export async function buildWgOurs(name: string, tmp: string, made: string[]): Promise<EncryptedPair> {
  const hosts = underlay(`${name}-e`, "198.19.2", made);
  const underlays = ["198.19.2.1", "198.19.2.2"];
  const secret = new Uint8Array(randomBytes(32));
  const nets: NetHost[] = hosts.map((h) => openHost(netnsPath(h)));
  const devices: WireguardGo[] = [];
  const keys = hosts.map((h) => loadOrCreateWgKey(join(tmp, h, "data")));
  try {
    for (const [i, h] of hosts.entries()) {
      applyFailClosed({}, netnsPath(h));
      const dev = new WireguardGo({
        host: nets[i]!,
        netns: netnsPath(h),
        address: tunnelCidr(underlays[i]!),
        mtu: WG_MTUS.wireguard,
        socketDir: join(tmp, h, "wireguard"),
      });
      devices.push(dev);
      await dev.start();
      const o = 1 - i;
      const self = { privateKey: keys[i]!.privateKey, clusterSecret: secret, underlay: underlays[i]! };
      const remote = { name: hosts[o]!, ip: underlays[o]!, publicKey: keys[o]!.publicKey };
      await dev.sync(desiredWireguard(self, [remote]).want);
      const br = nets[i]!.addBridge("weave", { mtu: WG_MTUS.overlay });
      const vx = nets[i]!.addVxlan({
        name: "vxlan-6784",
        vni: VXLAN_VNI,
        port: VXLAN_PORT,
        local: tunnelAddress(underlays[i]!),
        mtu: WG_MTUS.overlay,
        master: br.index,
        learning: false,
      });
      nets[i]!.setLink(vx.index, { up: true });
      nets[i]!.addFdb({ dev: vx.index, mac: "00:00:00:00:00:00", dst: tunnelAddress(underlays[o]!) });
      pod(h, "weave", `${name}-ep${i + 1}`, `10.202.0.${i + 1}/24`, made);
    }
  } catch (e) {
    for (const d of devices) await d.stop();
    throw e;
  }
  const mtus = hosts.flatMap((h, i): [string, string, number][] => [
    [h, "eth0", 1500],
    [h, "weave-wg", WG_MTUS.wireguard],
    [h, "vxlan-6784", WG_MTUS.overlay],
    [h, "weave", WG_MTUS.overlay],
    [`${name}-ep${i + 1}`, "eth0", WG_MTUS.overlay],
  ]);
  return {
    pods: [`${name}-ep1`, `${name}-ep2`],
    podIps: ["10.202.0.1", "10.202.0.2"],
    mtus,
    stop: async () => {
      for (const d of devices) await d.stop();
      for (const n of nets) n.close();
    },
  };
}
