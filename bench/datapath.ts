/**
 * Datapath benchmark: iperf3 TCP throughput between pods on two lab nodes (our kernel
 * VXLAN through the agent's bridge), against the underlay between the same two nodes and
 * against a hand-built raw kernel VXLAN pair with the same MTUs; the kinds alternate in
 * every round. Also: a don't-fragment ping at full pod MTU across the nodes with the pods'
 * segmentation offloads off, and throughput with those offloads off. Encrypted: pods of
 * a second lab, one with a password (our whole encrypted datapath: the agent's VXLAN
 * inside weave-wg, wireguard-go), against a hand-built pair of the same wireguard-go
 * with the same MTUs (bench/datapath-wireguard.ts), and a pair built from our building
 * blocks without the agent; all alternate with the rest in every round. The sleeve: the
 * same lab's pods with UDP 6784 dropped between the two nodes (`weave lab block`), so the
 * agents carry their traffic in userspace over UDP 6783; lifted again after each sample.
 *
 *   bun bench/datapath.ts [--rounds N] [--time S] [--omit S] [--no-offload-off] [--diagnose]
 *                         [--no-encrypted] [--no-sleeve] [--quiet PCT] [--quiet-seconds S] [--quiet-max S] [--json]
 *
 * Prints a table and, always as the last stdout line, one JSON line (only that with
 * --json). Exit: 0 done; 1 aborted (a failed step, e.g. a ping that did not pass or an
 * iperf3 run that failed); 2 usage or missing prerequisite; 3 done, but a cleanup step
 * failed or the full-MTU ping did not pass; 130 interrupted. docs/benchmarks.md
 * ("Datapath throughput") has the numbers.
 *
 * What it builds (names from <lab> = "bd" + 6 characters from the pid):
 *   - a lab with 2 nodes and 1 pod each (labUp): pods <lab>-n1-p1 and <lab>-n2-p1 on
 *     nodes 198.18.0.11/.12 (eth0 MTU 1500), pod eth0 MTU 1450, VXLAN UDP 6784;
 *   - the raw pair, same shape as a lab node but with nothing of ours in it:
 *       <lab>-ru            underlay: bridge br0, MTU 1500
 *       <lab>-rh1, -rh2     "hosts": eth0 198.19.0.1/24, .2/24 (MTU 1500) on br0;
 *                           vxlan42 (id 42, dstport 4789, local/remote, MTU 1450) and a
 *                           veth, both ports of a bridge br0 (MTU 1450)
 *       <lab>-rp1, -rp2     "pods": eth0 10.200.0.1/24, .2/24, MTU 1450
 *   - the encrypted pairs (unless --no-encrypted): <lab>-w{u,h1,h2,p1,p2} by hand and
 *     <lab>-e{u,h1,h2,p1,p2} from our blocks; underlay 1500, WireGuard 1440, pods 1390;
 *   - the encrypted lab (unless --no-encrypted): "be" + 6 characters, 2 nodes and 1 pod
 *     each, with a random password (handed to its agents as a 0600 file, as lab up does;
 *     never on a command line); node eth0 1500, weave-wg 1440, pod eth0 1390.
 * Traffic only ever flows inside these namespaces.
 *
 * Each measurement is one iperf3 TCP stream for --time seconds (after --omit seconds of
 * warm-up that iperf3 leaves out of its numbers), client in one namespace and a one-off
 * server (`iperf3 -s -1`) in the other; the figure is the receiver's bits per second.
 * In each round the kinds run one after another, in an order rotated by one each round.
 * The "offloads off" kinds first run `ethtool -K eth0 tso off gso off gro off` in both
 * pods and put the previous settings back afterwards. --diagnose adds two kinds that
 * locate the gap between ours and the raw pair (see usage). Before each measurement the
 * run waits until the machine's CPUs were >= 90 % idle over 3 s (--quiet; the machine is
 * shared), for at most 120 s, then measures anyway and marks the sample busy.
 *
 * Cleanup is always done (finally, also on SIGINT/SIGTERM): iperf3 processes by pid, the
 * raw pair's namespaces by name, the labs by labDown, the temp dir.
 */
import { randomBytes } from "node:crypto";
import { labBlock, labUp } from "../net/lab/lab.ts";
import { buildWgOurs, buildWgReference, type EncryptedPair, WG_MTUS } from "./datapath-wireguard.ts";
import type { LabState } from "../net/lab/state.ts";
import { createNamedNetns, netnsPath } from "../net/host/netns.ts";
import {
  abort,
  BenchError,
  checkpoint,
  deleteNamespaces,
  downLab,
  endTracked,
  failer,
  handleSignals,
  interrupted,
  labName,
  median,
  parseFlags,
  PATH,
  printResult,
  QUIET_DEFAULTS,
  quietFlag,
  r2,
  r3,
  removeTmp,
  requireBuild,
  requireRoot,
  running,
  snapshotBinaries,
  stderrLog,
  throwIfInterrupted,
  waitQuiet,
  warn,
} from "./lib.ts";
const POD_MTU = 1450;
const PING_SIZE = POD_MTU - 28; // 1422: IPv4 20 + ICMP 8
const WG_PING_SIZE = WG_MTUS.overlay - 28; // 1362
const PORT = 5201;

type Opts = {
  rounds: number;
  time: number;
  omit: number;
  offloadOff: boolean;
  diagnose: boolean;
  encrypted: boolean;
  sleeve: boolean;
  json: boolean;
  quiet: number;
  quietSeconds: number;
  quietMax: number;
};

function usage(): string {
  return (
    "usage: bun bench/datapath.ts [--rounds N] [--time S] [--omit S] [--no-offload-off] [--diagnose]\n" +
    "                             [--no-encrypted] [--no-sleeve] [--quiet PCT] [--quiet-seconds S] [--quiet-max S] [--json]\n" +
    "  --rounds N        rounds; each round measures every kind once (default 3)\n" +
    "  --time S          seconds per iperf3 measurement (default 10)\n" +
    "  --omit S          seconds of warm-up iperf3 runs first and leaves out (default 1)\n" +
    "  --no-offload-off  skip the two 'offloads off' kinds\n" +
    "  --diagnose        add two kinds that locate the gap between ours and the raw pair: the raw\n" +
    "                    pair with the agent's nftables masquerade table added to its hosts, and\n" +
    "                    ours with net.bridge.bridge-nf-call-iptables=0 in both nodes (put back after)\n" +
    "  --no-encrypted    skip the three encrypted kinds, VXLAN inside wireguard-go: pods of a lab with a\n" +
    "                    password (the whole agent), a pair built from our blocks and one by hand\n" +
    "                    (default: measured; needs wireguard-go and wg)\n" +
    "  --no-sleeve       skip the sleeve kind: the lab's pods with UDP 6784 dropped between the two\n" +
    "                    nodes (weave lab block), so their traffic takes the userspace sleeve (UDP 6783)\n" +
    "  --quiet PCT       before each measurement wait until the machine's CPUs were at least PCT %\n" +
    "                    idle over --quiet-seconds (default 90; 0 turns the wait off)\n" +
    "  --quiet-seconds S the idle window (default 3); --quiet-max S: wait at most S s, then\n" +
    "                    measure anyway and mark the sample busy (default 120)\n" +
    "  --json            print only the JSON result line"
  );
}

const fail: (msg: string) => never = failer("datapath");

function parseArgs(argv: string[]): Opts {
  const o: Opts = {
    rounds: 3,
    time: 10,
    omit: 1,
    offloadOff: true,
    diagnose: false,
    encrypted: true,
    sleeve: true,
    json: false,
    ...QUIET_DEFAULTS,
  };
  parseFlags(argv, fail, usage(), (f) => {
    if (f.flag === "--json") o.json = true;
    else if (f.flag === "--no-offload-off") o.offloadOff = false;
    else if (f.flag === "--diagnose") o.diagnose = true;
    else if (f.flag === "--no-encrypted") o.encrypted = false;
    else if (f.flag === "--no-sleeve") o.sleeve = false;
    else if (f.flag === "--rounds") o.rounds = f.int(1, 100);
    else if (f.flag === "--time") o.time = f.int(1, 600);
    else if (f.flag === "--omit") o.omit = f.int(0, 60);
    else return quietFlag(f, o);
    return true;
  });
  return o;
}

// ---------------------------------------------------------------------------------------
// Processes: every one we start is tracked by pid (lib.ts's `running`) until it exits, so
// cleanup (and a signal) can end exactly those.

function nsArgv(ns: string, cmd: string[]): string[] {
  return ["nsenter", `--net=${netnsPath(ns)}`, ...cmd];
}

function sh(argv: string[], opts: { allowFail?: boolean } = {}): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(argv, { env: { PATH }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const out = { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  if (out.code !== 0 && !opts.allowFail)
    throw new BenchError(`\`${argv.join(" ")}\` exited ${out.code}:\n${(out.stderr + out.stdout).trim()}`);
  return out;
}

const inNsSh = (ns: string, cmd: string[], opts: { allowFail?: boolean } = {}) => sh(nsArgv(ns, cmd), opts);

async function spawnTracked(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(argv, { env: { PATH }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  running.add(p.pid);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    running.delete(p.pid);
  }
}

handleSignals("datapath");

// ---------------------------------------------------------------------------------------
// The raw VXLAN pair.

type Raw = {
  underlay: string;
  hosts: [string, string];
  pods: [string, string];
  hostIps: [string, string];
  podIps: [string, string];
};

function buildRaw(name: string, made: string[]): Raw {
  const raw: Raw = {
    underlay: `${name}-ru`,
    hosts: [`${name}-rh1`, `${name}-rh2`],
    pods: [`${name}-rp1`, `${name}-rp2`],
    hostIps: ["198.19.0.1", "198.19.0.2"],
    podIps: ["10.200.0.1", "10.200.0.2"],
  };
  for (const ns of [raw.underlay, ...raw.hosts, ...raw.pods]) {
    createNamedNetns(ns);
    made.push(ns);
  }
  const u = raw.underlay;
  inNsSh(u, ["ip", "link", "add", "br0", "mtu", "1500", "type", "bridge"]);
  inNsSh(u, ["ip", "link", "set", "br0", "up"]);
  for (const i of [0, 1] as const) {
    const h = raw.hosts[i];
    const p = raw.pods[i];
    const port = `h${i + 1}`;
    // Underlay: a veth from the underlay bridge to the host's eth0, MTU 1500.
    inNsSh(u, [
      "ip",
      "link",
      "add",
      port,
      "mtu",
      "1500",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "mtu",
      "1500",
      "netns",
      netnsPath(h),
    ]);
    inNsSh(u, ["ip", "link", "set", port, "master", "br0", "up"]);
    inNsSh(h, ["ip", "link", "set", "eth0", "up"]);
    inNsSh(h, ["ip", "addr", "add", `${raw.hostIps[i]}/24`, "dev", "eth0"]);
    // The host's pod side: bridge br0 (MTU 1450) with the vxlan and the pod's veth as ports.
    inNsSh(h, ["ip", "link", "add", "br0", "mtu", String(POD_MTU), "type", "bridge"]);
    inNsSh(h, [
      "ip",
      "link",
      "add",
      "vxlan42",
      "mtu",
      String(POD_MTU),
      "type",
      "vxlan",
      "id",
      "42",
      "dstport",
      "4789",
      "local",
      raw.hostIps[i],
      "remote",
      raw.hostIps[1 - i]!,
      "dev",
      "eth0",
    ]);
    inNsSh(h, ["ip", "link", "set", "vxlan42", "master", "br0", "up"]);
    inNsSh(h, [
      "ip",
      "link",
      "add",
      "veth0",
      "mtu",
      String(POD_MTU),
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "mtu",
      String(POD_MTU),
      "netns",
      netnsPath(p),
    ]);
    inNsSh(h, ["ip", "link", "set", "veth0", "master", "br0", "up"]);
    inNsSh(h, ["ip", "link", "set", "br0", "up"]);
    inNsSh(p, ["ip", "link", "set", "eth0", "up"]);
    inNsSh(p, ["ip", "addr", "add", `${raw.podIps[i]}/24`, "dev", "eth0"]);
  }
  // A veth peer does not inherit the MTU given for its other end: check every one.
  const want: [string, string, number][] = [
    ...raw.hosts.flatMap(
      (h) =>
        [
          [h, "eth0", 1500],
          [h, "vxlan42", POD_MTU],
          [h, "br0", POD_MTU],
          [h, "veth0", POD_MTU],
        ] as [string, string, number][],
    ),
    ...raw.pods.map((p) => [p, "eth0", POD_MTU] as [string, string, number]),
  ];
  for (const [ns, dev, mtu] of want) {
    const got = Number(/ mtu (\d+)/.exec(inNsSh(ns, ["ip", "link", "show", dev]).stdout)?.[1]);
    if (got !== mtu) throw new BenchError(`raw pair: ${dev} in ${ns} has MTU ${got}, not ${mtu}`);
  }
  return raw;
}

// ---------------------------------------------------------------------------------------
// Measurements.

type Kind =
  | "ours"
  | "underlay"
  | "raw"
  | "oursOffloadOff"
  | "rawOffloadOff"
  | "rawNat"
  | "oursNoBrNf"
  | "wgOurs"
  | "wgRef"
  | "wgLab"
  | "sleeve";
const LABELS: Record<Kind, string> = {
  ours: "ours: pod to pod across nodes",
  underlay: "underlay: node to node",
  raw: "raw kernel VXLAN pod to pod",
  oursOffloadOff: "ours, pod offloads off",
  rawOffloadOff: "raw VXLAN, pod offloads off",
  rawNat: "raw VXLAN + agent's nat table",
  oursNoBrNf: "ours, bridge-nf-call-iptables=0",
  wgOurs: "encrypted: our blocks, wireguard-go",
  wgRef: "encrypted: hand-built wireguard-go",
  wgLab: "encrypted lab: pod to pod (ours)",
  sleeve: "sleeve: pod to pod, UDP 6784 dropped",
};
type Pair = {
  from: string;
  to: string;
  toIp: string;
  offloadNs?: [string, string];
  around?: <T>(fn: () => Promise<T>) => Promise<T>;
};
type Sample = {
  round: number;
  kind: Kind;
  gbps: number;
  retransmits: number;
  senderCpu: number;
  receiverCpu: number;
  at: string;
  idleBeforePct: number;
  busy: boolean;
};

async function waitListening(ns: string, port: number, serverPid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = inNsSh(ns, ["ss", "-Hltn", `sport = :${port}`], { allowFail: true });
    if (r.stdout.trim()) return;
    if (!running.has(serverPid)) break;
    await Bun.sleep(10);
  }
  throw new BenchError(`iperf3 server in ${ns} did not listen on ${port}`);
}

async function iperf(
  pair: Pair,
  o: Opts,
): Promise<{ gbps: number; retransmits: number; senderCpu: number; receiverCpu: number }> {
  const server = Bun.spawn(nsArgv(pair.to, ["iperf3", "-s", "-1", "-p", String(PORT)]), {
    env: { PATH },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  running.add(server.pid);
  const serverDone = Promise.all([
    new Response(server.stdout).text(),
    new Response(server.stderr).text(),
    server.exited,
  ]).finally(() => running.delete(server.pid));
  try {
    await waitListening(pair.to, PORT, server.pid);
    const c = await spawnTracked(
      nsArgv(pair.from, [
        "iperf3",
        "-c",
        pair.toIp,
        "-p",
        String(PORT),
        "-t",
        String(o.time),
        "-O",
        String(o.omit),
        "-J",
      ]),
    );
    throwIfInterrupted();
    // biome-ignore lint/suspicious/noExplicitAny: iperf3 -J output, read field by field below
    let j: any;
    try {
      j = JSON.parse(c.stdout);
    } catch {
      throw new BenchError(
        `iperf3 -c ${pair.toIp} in ${pair.from} exited ${c.code} without JSON:\n${(c.stdout + c.stderr).trim().slice(0, 600)}`,
      );
    }
    if (c.code !== 0 || j.error)
      throw new BenchError(
        `iperf3 -c ${pair.toIp} in ${pair.from} failed (exit ${c.code}): ${j.error ?? c.stderr.trim()}`,
      );
    const bps = j.end?.sum_received?.bits_per_second;
    if (typeof bps !== "number")
      throw new BenchError(`iperf3 -c ${pair.toIp} in ${pair.from}: no end.sum_received in its JSON`);
    return {
      gbps: bps / 1e9,
      retransmits: j.end?.sum_sent?.retransmits ?? 0,
      senderCpu: j.end?.cpu_utilization_percent?.host_total ?? NaN,
      receiverCpu: j.end?.cpu_utilization_percent?.remote_total ?? NaN,
    };
  } finally {
    // A one-off server exits after its test; after a failure, end it by its pid.
    const t = setTimeout(() => {
      try {
        process.kill(server.pid, "SIGTERM");
      } catch {
        /* gone */
      }
    }, 2000);
    await serverDone;
    clearTimeout(t);
  }
}

type Offloads = { tso: string; gso: string; gro: string };

function readOffloads(ns: string): Offloads {
  const k = inNsSh(ns, ["ethtool", "-k", "eth0"]).stdout;
  const get = (key: string) => new RegExp(`^${key}: (on|off)`, "m").exec(k)?.[1] ?? "on";
  return {
    tso: get("tcp-segmentation-offload"),
    gso: get("generic-segmentation-offload"),
    gro: get("generic-receive-offload"),
  };
}

function setOffloads(ns: string, v: Offloads): void {
  inNsSh(ns, ["ethtool", "-K", "eth0", "tso", v.tso, "gso", v.gso, "gro", v.gro]);
}

const OFF: Offloads = { tso: "off", gso: "off", gro: "off" };

type PingResult = { from: string; to: string; size: number; ok: boolean; output: string };

function dfPing(from: string, toIp: string, size: number): PingResult {
  const r = inNsSh(from, ["ping", "-M", "do", "-s", String(size), "-c", "3", "-i", "0.2", "-W", "2", toIp], {
    allowFail: true,
  });
  return { from, to: toIp, size, ok: r.code === 0, output: (r.stdout + r.stderr).trim() };
}

/** Until every node's agent says its peers' pods go over `path` (its /report's DataPaths), for at most 30 s. */
async function waitPaths(weave: string, nodes: string[], path: "fastdp" | "sleeve"): Promise<void> {
  const paths = (ns: string): string[] => {
    const r = inNsSh(ns, [weave, "report"], { allowFail: true });
    try {
      return (JSON.parse(r.stdout).Router?.DataPaths ?? []).map((d: { Path: string }) => d.Path);
    } catch {
      return [];
    }
  };
  const end = Date.now() + 30_000;
  while (!nodes.every((ns) => paths(ns).length > 0 && paths(ns).every((p) => p === path))) {
    if (Date.now() > end) throw new BenchError(`the agents did not move their peers to ${path} within 30 s`);
    await Bun.sleep(200);
  }
}

function vxlanLine(ns: string, dev: string): string {
  const d = inNsSh(ns, ["ip", "-d", "link", "show", dev], { allowFail: true }).stdout;
  return (/vxlan id .*/.exec(d)?.[0] ?? "?").trim();
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const log = stderrLog(o.json);
  requireRoot(fail);
  for (const [bin, pkg] of [
    ["iperf3", "iperf3"],
    ["ethtool", "ethtool"],
    ["ping", "iputils-ping"],
    ["ss", "iproute2"],
    ...(o.encrypted
      ? ([
          ["wireguard-go", "wireguard-go"],
          ["wg", "wireguard-tools"],
        ] as const)
      : []),
  ] as const) {
    if (!Bun.which(bin, { PATH })) fail(`${bin} is missing; install it: apt-get install -y ${pkg}`);
  }
  requireBuild(fail);

  const name = labName("bd");
  const encName = labName("be");
  // Hard links of the binaries: a rebuild of dist/ during the run cannot change them.
  const { tmp, weaveBin, pluginBin, build } = snapshotBinaries("datapath", name, fail);
  const labTools = { weave: [weaveBin], plugin: pluginBin, log };

  const made: string[] = [];
  const labsMade: string[] = [];
  const samples: Sample[] = [];
  const pings: PingResult[] = [];
  const restore: [string, Offloads][] = [];
  const stops: (() => Promise<void>)[] = [];
  let info: Record<string, string> = {};

  try {
    log(`lab ${name}: 2 nodes, 1 pod each...`);
    labsMade.push(name);
    const lab: LabState = await labUp(name, 2, 1, labTools);
    await checkpoint();
    const [n1, n2] = lab.nodes as [LabState["nodes"][0], LabState["nodes"][0]];
    const p1 = lab.pods.find((p) => p.node === n1.name)!;
    const p2 = lab.pods.find((p) => p.node === n2.name)!;

    log(`raw VXLAN pair ${name}-r{u,h1,h2,p1,p2}...`);
    const raw = buildRaw(name, made);
    await checkpoint();

    let wgRef: EncryptedPair | undefined;
    let wgOurs: EncryptedPair | undefined;
    let wgLab: EncryptedPair | undefined;
    if (o.encrypted) {
      log(`encrypted lab ${encName}: 2 nodes, 1 pod each, with a password...`);
      labsMade.push(encName);
      const enc: LabState = await labUp(encName, 2, 1, labTools, { password: new Uint8Array(randomBytes(24)) });
      const [e1, e2] = enc.nodes as [LabState["nodes"][0], LabState["nodes"][0]];
      const q1 = enc.pods.find((p) => p.node === e1.name)!;
      const q2 = enc.pods.find((p) => p.node === e2.name)!;
      wgLab = {
        pods: [q1.name, q2.name],
        podIps: [q1.ip, q2.ip],
        mtus: [
          ...[e1, e2].flatMap(
            (n) =>
              [
                [n.netns, "eth0", 1500],
                [n.netns, "weave-wg", WG_MTUS.wireguard],
                [n.netns, "vxlan-6784", WG_MTUS.overlay],
              ] as [string, string, number][],
          ),
          [q1.name, "eth0", WG_MTUS.overlay],
          [q2.name, "eth0", WG_MTUS.overlay],
        ],
        stop: async () => {},
      };
      await checkpoint();
      log(`encrypted pairs ${name}-w{u,h1,h2,p1,p2} (by hand) and ${name}-e{u,h1,h2,p1,p2} (our blocks)...`);
      wgRef = await buildWgReference(name, tmp, made);
      stops.push(wgRef.stop);
      wgOurs = await buildWgOurs(name, tmp, made);
      stops.push(wgOurs.stop);
      for (const [ns, dev, want] of [...wgRef.mtus, ...wgOurs.mtus, ...wgLab.mtus]) {
        const got = Number(/ mtu (\d+)/.exec(inNsSh(ns, ["ip", "link", "show", dev]).stdout)?.[1]);
        if (got !== want) throw new BenchError(`encrypted pair: ${dev} in ${ns} has MTU ${got}, not ${want}`);
      }
      await checkpoint();
    }

    // Sanity: every pair of endpoints reaches the other before anything is timed.
    const reach = (ns: string, ip: string) => {
      let r = inNsSh(ns, ["ping", "-c", "1", "-W", "2", ip], { allowFail: true });
      for (let i = 0; i < 3 && r.code !== 0; i++)
        r = inNsSh(ns, ["ping", "-c", "1", "-W", "2", ip], { allowFail: true });
      if (r.code !== 0)
        throw new BenchError(
          `\`nsenter --net=${netnsPath(ns)} ping -c 1 -W 2 ${ip}\` failed (4 tries):\n${(r.stdout + r.stderr).trim()}`,
        );
    };
    reach(p1.name, p2.ip);
    reach(p2.name, p1.ip);
    reach(n1.netns, n2.ip);
    reach(raw.pods[0], raw.podIps[1]);
    reach(raw.pods[1], raw.podIps[0]);
    for (const pair of [wgRef, wgOurs, wgLab]) if (pair) reach(pair.pods[0], pair.podIps[1]);
    for (const pair of [wgRef, wgOurs, wgLab]) if (pair) reach(pair.pods[1], pair.podIps[0]);

    const encryptedPair = (p: EncryptedPair | undefined): Pair =>
      p ? { from: p.pods[0], to: p.pods[1], toIp: p.podIps[1] } : { from: "", to: "", toIp: "" };
    const pairs: Record<Kind, Pair> = {
      wgOurs: encryptedPair(wgOurs),
      wgRef: encryptedPair(wgRef),
      wgLab: encryptedPair(wgLab),
      ours: { from: p1.name, to: p2.name, toIp: p2.ip },
      underlay: { from: n1.netns, to: n2.netns, toIp: n2.ip },
      raw: { from: raw.pods[0], to: raw.pods[1], toIp: raw.podIps[1] },
      oursOffloadOff: { from: p1.name, to: p2.name, toIp: p2.ip, offloadNs: [p1.name, p2.name] },
      rawOffloadOff: { from: raw.pods[0], to: raw.pods[1], toIp: raw.podIps[1], offloadNs: [raw.pods[0], raw.pods[1]] },
      // --diagnose: the agent's masquerade table (same rule, the raw pair's range and bridge)
      // in both raw hosts, which turns on conntrack there as it is on our nodes.
      rawNat: {
        from: raw.pods[0],
        to: raw.pods[1],
        toIp: raw.podIps[1],
        around: async (fn) => {
          const table =
            "table ip benchnat {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n" +
            '    ip saddr 10.200.0.0/24 ip daddr != 10.200.0.0/24 oifname != "br0" masquerade\n  }\n}\n';
          try {
            for (const h of raw.hosts) {
              const r = Bun.spawnSync(nsArgv(h, ["nft", "-f", "-"]), {
                env: { PATH },
                stdin: Buffer.from(table),
                stdout: "pipe",
                stderr: "pipe",
              });
              if (r.exitCode !== 0) throw new BenchError(`nft -f - in ${h}: ${r.stderr.toString().trim()}`);
            }
            return await fn();
          } finally {
            for (const h of raw.hosts) inNsSh(h, ["nft", "delete", "table", "ip", "benchnat"], { allowFail: true });
          }
        },
      },
      // The lab's pods with VXLAN dropped between the nodes: the agents move them to the
      // sleeve (within ~3 s), and back to the fast path afterwards.
      sleeve: {
        from: p1.name,
        to: p2.name,
        toIp: p2.ip,
        around: async (fn) => {
          try {
            labBlock(name, n1.name, n2.name, { udp: 6784 }, true);
            await waitPaths(weaveBin, [n1.netns, n2.netns], "sleeve");
            return await fn();
          } finally {
            labBlock(name, n1.name, n2.name, { udp: 6784 }, false);
            await waitPaths(weaveBin, [n1.netns, n2.netns], "fastdp");
          }
        },
      },
      // --diagnose: bridged pod traffic in our nodes kept out of the IPv4 netfilter hooks.
      oursNoBrNf: {
        from: p1.name,
        to: p2.name,
        toIp: p2.ip,
        around: async (fn) => {
          const key = "net.bridge.bridge-nf-call-iptables";
          const saved = [n1.netns, n2.netns].map(
            (ns) => [ns, inNsSh(ns, ["sysctl", "-n", key]).stdout.trim()] as const,
          );
          try {
            for (const [ns] of saved) inNsSh(ns, ["sysctl", "-qw", `${key}=0`]);
            return await fn();
          } finally {
            for (const [ns, v] of saved) inNsSh(ns, ["sysctl", "-qw", `${key}=${v}`], { allowFail: true });
          }
        },
      },
    };
    const mtu = (ns: string, dev: string) =>
      /mtu (\d+)/.exec(inNsSh(ns, ["ip", "link", "show", dev]).stdout)?.[1] ?? "?";
    info = {
      oursVxlan: vxlanLine(n1.netns, "vxlan-6784"),
      rawVxlan: vxlanLine(raw.hosts[0], "vxlan42"),
      mtus: `ours: node eth0 ${mtu(n1.netns, "eth0")}, vxlan ${mtu(n1.netns, "vxlan-6784")}, pod eth0 ${mtu(p1.name, "eth0")}; raw: host eth0 ${mtu(raw.hosts[0], "eth0")}, vxlan ${mtu(raw.hosts[0], "vxlan42")}, pod eth0 ${mtu(raw.pods[0], "eth0")}`,
      podOffloads: JSON.stringify(readOffloads(p1.name)),
      encrypted: o.encrypted
        ? `encrypted (the lab and both pairs): eth0 1500, wireguard-go ${WG_MTUS.wireguard}, vxlan/bridge/pod eth0 ${WG_MTUS.overlay}; ${Bun.spawnSync(["wireguard-go", "--version"]).stdout.toString().split("\n")[0]}`
        : "encrypted: not measured (--no-encrypted)",
    };
    log(`ours: ${info.oursVxlan}\nraw:  ${info.rawVxlan}\n${info.mtus}; pod offloads ${info.podOffloads}`);

    const withOffloadsOff = async <T>(nss: [string, string], fn: () => Promise<T> | T): Promise<T> => {
      const saved = nss.map((ns) => [ns, readOffloads(ns)] as [string, Offloads]);
      restore.push(...saved);
      try {
        for (const ns of nss) setOffloads(ns, OFF);
        return await fn();
      } finally {
        for (const [ns, v] of saved) setOffloads(ns, v);
        restore.splice(0, restore.length);
      }
    };

    // Full-MTU don't-fragment pings across the nodes, pod offloads off (both directions),
    // and the same on the raw pair for comparison.
    await withOffloadsOff([p1.name, p2.name], () => {
      pings.push(dfPing(p1.name, p2.ip, PING_SIZE), dfPing(p2.name, p1.ip, PING_SIZE));
    });
    await withOffloadsOff([raw.pods[0], raw.pods[1]], () => {
      pings.push(dfPing(raw.pods[0], raw.podIps[1], PING_SIZE), dfPing(raw.pods[1], raw.podIps[0], PING_SIZE));
    });
    for (const pair of [wgRef, wgOurs, wgLab])
      if (pair)
        await withOffloadsOff(pair.pods, () => {
          pings.push(
            dfPing(pair.pods[0], pair.podIps[1], WG_PING_SIZE),
            dfPing(pair.pods[1], pair.podIps[0], WG_PING_SIZE),
          );
        });
    for (const p of pings) log(`ping -M do -s ${p.size} ${p.from} -> ${p.to}: ${p.ok ? "passes" : "FAILS"}`);
    await checkpoint();

    const kinds: Kind[] = ["ours", "underlay", "raw"];
    if (o.offloadOff) kinds.push("oursOffloadOff", "rawOffloadOff");
    if (o.diagnose) kinds.push("rawNat", "oursNoBrNf");
    if (o.encrypted) kinds.push("wgLab", "wgRef", "wgOurs");
    if (o.sleeve) kinds.push("sleeve");
    const total = o.rounds * kinds.length;
    log(
      `${o.rounds} round(s) x ${kinds.length} kinds x ${o.time + o.omit} s = about ${Math.round((total * (o.time + o.omit + 1)) / 60)} min`,
    );
    for (let r = 0; r < o.rounds; r++) {
      const order = kinds.map((_, i) => kinds[(i + r) % kinds.length]!);
      for (const kind of order) {
        const pair = pairs[kind];
        const q =
          o.quiet > 0
            ? await waitQuiet(o.quiet, o.quietSeconds, o.quietMax, log)
            : { quiet: true, idlePct: NaN, waitedS: 0 };
        if (!q.quiet)
          log(
            `the machine was not ${o.quiet} % idle within ${o.quietMax} s (${q.idlePct.toFixed(0)} %): measuring anyway, sample marked busy`,
          );
        const at = new Date().toISOString().slice(11, 19);
        const run = () => (pair.offloadNs ? withOffloadsOff(pair.offloadNs, () => iperf(pair, o)) : iperf(pair, o));
        const res = pair.around ? await pair.around(run) : await run();
        samples.push({ round: r + 1, kind, at, ...res, idleBeforePct: q.idlePct, busy: !q.quiet });
        log(
          `round ${r + 1} ${at} ${LABELS[kind].padEnd(33)} ${res.gbps.toFixed(2)} Gbit/s  retr ${res.retransmits}  cpu snd ${res.senderCpu.toFixed(0)}% rcv ${res.receiverCpu.toFixed(0)}%  (idle before ${q.idlePct.toFixed(0)} %${q.waitedS > 5 ? `, waited ${q.waitedS.toFixed(0)} s` : ""}${q.quiet ? "" : ", BUSY"})`,
        );
        await checkpoint();
      }
    }
  } catch (e) {
    return abort("datapath", e, () => cleanup(labsMade, made, tmp, labTools, restore, stops));
  }
  const cleanupProblems = await cleanup(labsMade, made, tmp, labTools, restore, stops);
  if (interrupted()) return 130;

  // Summaries: the median over rounds for each kind; ratios both of the medians and per
  // round (the kinds of one round ran back to back, so a round's ratio is a paired one).
  const kindsSeen = [...new Set(samples.map((s) => s.kind))];
  const by = (k: Kind) => samples.filter((s) => s.kind === k);
  const med = (k: Kind) => (by(k).length ? median(by(k).map((s) => s.gbps)) : NaN);
  const perRound = (a: Kind, b: Kind) => {
    const out: number[] = [];
    for (let r = 1; r <= o.rounds; r++) {
      const x = samples.find((s) => s.round === r && s.kind === a);
      const y = samples.find((s) => s.round === r && s.kind === b);
      if (x && y) out.push(x.gbps / y.gbps);
    }
    return out;
  };
  const ratioPairs: [string, Kind, Kind][] = [
    ["ours/raw", "ours", "raw"],
    ["ours/underlay", "ours", "underlay"],
    ["raw/underlay", "raw", "underlay"],
  ];
  if (o.offloadOff)
    ratioPairs.push(["oursOff/rawOff", "oursOffloadOff", "rawOffloadOff"], ["oursOff/ours", "oursOffloadOff", "ours"]);
  if (o.diagnose)
    ratioPairs.push(
      ["ours/rawNat", "ours", "rawNat"],
      ["rawNat/raw", "rawNat", "raw"],
      ["oursNoBrNf/raw", "oursNoBrNf", "raw"],
    );
  if (o.encrypted)
    ratioPairs.push(
      ["wgLab/wgRef", "wgLab", "wgRef"],
      ["wgLab/ours", "wgLab", "ours"],
      ["wgLab/underlay", "wgLab", "underlay"],
      ["wgOurs/wgRef", "wgOurs", "wgRef"],
      ["wgRef/raw", "wgRef", "raw"],
    );
  if (o.sleeve) ratioPairs.push(["sleeve/ours", "sleeve", "ours"], ["sleeve/raw", "sleeve", "raw"]);
  const ratios: Record<string, { ofMedians: number; perRound: number[] }> = {};
  for (const [label, a, b] of ratioPairs)
    ratios[label] = { ofMedians: r3(med(a) / med(b)), perRound: perRound(a, b).map(r3) };
  // Ours: the lab's two pings and, when measured, those of the pair from our blocks and of the encrypted lab.
  const ourPings = [...pings.slice(0, 2), ...(o.encrypted ? pings.slice(6, 10) : [])];
  const pingPasses = ourPings.length === (o.encrypted ? 6 : 2) && ourPings.every((p) => p.ok);

  const out = {
    bench: "datapath",
    build,
    rounds: o.rounds,
    seconds: o.time,
    gbps: Object.fromEntries(kindsSeen.map((k) => [k, r2(med(k))])),
    ratio: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, v.ofMedians])),
    fullMtuPing: {
      size: PING_SIZE,
      ours: pings.slice(0, 2).every((p) => p.ok),
      raw: pings.slice(2, 4).every((p) => p.ok),
      ...(o.encrypted
        ? {
            encryptedSize: WG_PING_SIZE,
            wgRef: pings.slice(4, 6).every((p) => p.ok),
            wgOurs: pings.slice(6, 8).every((p) => p.ok),
            wgLab: pings.slice(8, 10).every((p) => p.ok),
          }
        : {}),
    },
    busySamples: samples.filter((s) => s.busy).length,
    samples: samples.map((s) => ({
      round: s.round,
      kind: s.kind,
      gbps: r2(s.gbps),
      retransmits: s.retransmits,
      idleBeforePct: Math.round(s.idleBeforePct),
      ...(s.busy ? { busy: true } : {}),
    })),
  };

  if (!o.json) {
    const perRoundW = Math.max(12, o.rounds * 6 + 2);
    const row = (cells: (string | number)[]) =>
      cells.map((c, i) => (i === 0 ? String(c).padEnd(34) : String(c).padStart(i === 2 ? perRoundW : 12))).join("");
    const lines = [
      "",
      `Datapath throughput: iperf3, 1 TCP stream, ${o.time} s per measurement (+${o.omit} s omitted), ${o.rounds} round(s), Gbit/s`,
      row(["", "median", "per round", "retr (med)", "cpu snd/rcv"]),
      ...kindsSeen.map((k) => {
        const s = by(k);
        return row([
          LABELS[k],
          med(k).toFixed(2),
          s.map((x) => x.gbps.toFixed(2)).join(" "),
          String(median(s.map((x) => x.retransmits))),
          `${median(s.map((x) => x.senderCpu)).toFixed(0)}/${median(s.map((x) => x.receiverCpu)).toFixed(0)}%`,
        ]);
      }),
      "",
      row(["ratio", "of medians", "per round", "", ""]),
      ...Object.entries(ratios).map(([k, v]) =>
        row([k, v.ofMedians.toFixed(3), v.perRound.map((x) => x.toFixed(3)).join(" "), "", ""]),
      ),
      "",
      ...pings.map(
        (p) => `ping -M do -s ${p.size} (pod offloads off) ${p.from} -> ${p.to}: ${p.ok ? "passes" : "FAILS"}`,
      ),
      `ours: ${info.oursVxlan}`,
      `raw:  ${info.rawVxlan}`,
      `MTUs: ${info.mtus}`,
      info.encrypted,
      `build: dist/weave modified ${build}`,
      o.quiet > 0
        ? `quiet gate: each measurement started after >= ${o.quiet} % idle CPUs over ${o.quietSeconds} s; busy samples (gate timed out): ${out.busySamples}`
        : "quiet gate: off",
      "",
    ];
    process.stdout.write(lines.join("\n"));
  }
  if (!pingPasses)
    for (const p of ourPings.filter((p) => !p.ok))
      process.stderr.write(
        `bench/datapath: full-MTU ping FAILED: nsenter --net=${netnsPath(p.from)} ping -M do -s ${p.size} -c 3 -i 0.2 -W 2 ${p.to}\n${p.output}\n`,
      );
  warn("datapath", cleanupProblems);
  printResult(out);
  return cleanupProblems.length || !pingPasses ? 3 : 0;
}

async function cleanup(
  labs: string[],
  made: string[],
  tmp: string,
  t: { weave: string[]; plugin: string; log(m: string): void },
  restore: [string, Offloads][],
  stops: (() => Promise<void>)[],
): Promise<string[]> {
  const problems: string[] = [];
  // The encrypted pairs' wireguard-go first: ours have a supervisor that would restart them.
  for (const stop of stops) {
    try {
      await stop();
    } catch (e) {
      problems.push(`stopping an encrypted pair: ${(e as Error).message}`);
    }
  }
  await endTracked();
  // Offload settings of lab pods are put back only for tidiness: the pods go with the lab.
  for (const [ns, v] of restore) {
    try {
      setOffloads(ns, v);
    } catch {
      /* the namespace may be gone already */
    }
  }
  deleteNamespaces(made, problems);
  for (const lab of labs) await downLab(lab, t, problems);
  removeTmp(tmp, problems);
  t.log(`cleaned up: namespaces ${made.join(" ") || "(none)"}, labs ${labs.join(" ") || "(none)"}, ${tmp}`);
  return problems;
}

process.exitCode = await main();
