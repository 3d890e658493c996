/**
 * `weave agent`: settings from flags and env (Weave's names), then the agent and its HTTP API.
 * The password (WEAVE_PASSWORD or --password-file, never a flag's value: command lines
 * are public) is stretched into the mesh's key here and then dropped; no log has it.
 */
import { SLEEVE_PORT, SLEEVE_TAP } from "../net/agent/sleeve-path.ts";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { Agent } from "../net/agent/agent.ts";
import { handleApi } from "../net/agent/api.ts";
import { DEFAULT_AGENT_SOCKET } from "../net/cni/wire.ts";
import { serveUnixHttp } from "../net/host/unix-http.ts";
import { parseCidr, CidrError, formatCidr, isIpv4, type Cidr } from "../net/cidr.ts";
import { meshPsk } from "../net/crypto/password.ts";
import { NOISE_PROTOCOL } from "../net/mesh/channel.ts";
import { WeaveError } from "../net/errors.ts";
import { openHost } from "../net/host/host.ts";
import { checkNetnsPath } from "../net/host/netns.ts";
import { Store } from "../net/host/store.ts";
import { tcpTransport } from "../net/host/tcp-transport.ts";
import { applyMasq, masqInPlace, removeMasq } from "../net/host/nft.ts";
import { npcAdmission } from "../net/host/npc-admission.ts";
import { collectGarbageEvery } from "../net/host/process.ts";
import { realScheduler } from "../net/mesh/transport.ts";
import { isPeerName } from "../net/mesh/peer-name.ts";
import type { Init } from "../net/ipam/ring.ts";

export type AgentOptions = {
  dataDir: string;
  ipallocRange?: string;
  mtu?: string | number;
  bridge: string;
  httpAddr: string;
  /** /metrics (WEAVE_METRICS_ADDR; default 0.0.0.0:6782; "off" serves none). */
  metricsAddr?: string;
  /** The root-only unix socket of what changes state (default /run/weave/weave.sock). */
  socket?: string;
  nickname?: string;
  peers?: string;
  port?: string | number;
  advertiseAddress?: string;
  connLimit?: string | number;
  discovery?: boolean;
  ipallocInit?: string;
  kubeconfig?: string;
  passwordFile?: string;
  /** wireguard-go's socket directory (the lab: one per node); default /var/run/wireguard. */
  wireguardSocketDir?: string;
};

const log = (m: string) => process.stderr.write(`${new Date().toISOString()} weave-agent: ${m}\n`);

const truthy = (v: string | undefined, dflt: boolean) =>
  v === undefined || v === "" ? dflt : !/^(0|false|no|off)$/i.test(v);

function intSetting(name: string, v: string | number | undefined, min: number, max: number): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new WeaveError("E_BAD_FLAG", `${name} "${v}" is not an integer from ${min} to ${max}`);
  return n;
}

/** A peer is an IPv4 address, optionally with :port. */
function parsePeers(source: string, text: unknown): string[] {
  const out: string[] = [];
  // cac turns a flag given without a value into `true`
  for (const p of (typeof text === "string" ? text : "").split(/[\s,]+/).filter(Boolean)) {
    const m = /^([^:]+)(?::(\d+))?$/.exec(p);
    if (!m || !isIpv4(m[1]!) || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)))
      throw new WeaveError("E_BAD_PEER", `${source}: "${p}" is not an IPv4 address (optionally with :port)`);
    out.push(p);
  }
  return out;
}

/** `--socket`: an absolute path that fits a unix socket address. */
function socketSetting(text: unknown): string {
  const path = text === undefined ? DEFAULT_AGENT_SOCKET : String(text);
  if (!path.startsWith("/") || path.length > 107)
    throw new WeaveError("E_BAD_FLAG", `--socket "${path}" must be an absolute path of at most 107 characters`);
  return path;
}

/** How long a stop may take to finish what is pending before the agent exits anyway. */
const STOP_GRACE_MS = 10_000;

export function parseAgentOptions(o: AgentOptions, env: Record<string, string | undefined>) {
  const rangeText = o.ipallocRange ?? env.IPALLOC_RANGE ?? "10.32.0.0/12";
  let range: Cidr;
  try {
    range = parseCidr(String(rangeText));
  } catch (e) {
    if (e instanceof CidrError) throw new WeaveError("E_BAD_RANGE", `--ipalloc-range / IPALLOC_RANGE ${e.message}`);
    throw e;
  }
  if (range.prefix > 30)
    throw new WeaveError("E_BAD_RANGE", `--ipalloc-range / IPALLOC_RANGE "${rangeText}" is too small (at most /30)`);
  const mtuText = o.mtu ?? env.WEAVE_MTU;
  let mtu: number | undefined;
  if (mtuText !== undefined && mtuText !== "") {
    mtu = Number(mtuText);
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535)
      throw new WeaveError("E_BAD_MTU", `--mtu / WEAVE_MTU "${mtuText}" is not an integer from 576 to 65535`);
  }
  const metricsText = String(o.metricsAddr ?? env.WEAVE_METRICS_ADDR ?? "0.0.0.0:6782");
  const mm = /^([\d.]+):(\d+)$/.exec(metricsText);
  if (metricsText !== "off" && (!mm || !isIpv4(mm[1]!) || Number(mm[2]) > 65535))
    throw new WeaveError("E_BAD_FLAG", `--metrics-addr / WEAVE_METRICS_ADDR "${metricsText}" is not ip:port (or off)`);
  const m = /^([\d.]+):(\d+)$/.exec(o.httpAddr);
  if (!m) throw new WeaveError("E_BAD_FLAG", `--http-addr "${o.httpAddr}" is not host:port`);
  if (o.advertiseAddress !== undefined && !isIpv4(o.advertiseAddress))
    throw new WeaveError("E_BAD_FLAG", `--advertise-address "${o.advertiseAddress}" is not an IPv4 address`);
  const peers = o.peers !== undefined ? parsePeers("--peers", o.peers) : parsePeers("KUBE_PEERS", env.KUBE_PEERS);
  const port = intSetting("--port", o.port, 1, 65535) ?? 6783;
  const ipallocInit = parseInit(o.ipallocInit ?? env.IPALLOC_INIT, peers, port);
  return {
    range,
    mtu,
    bridge: o.bridge,
    dataDir: o.dataDir,
    nickname: o.nickname ?? env.HOSTNAME ?? hostname(),
    http: { hostname: m[1]!, port: Number(m[2]) },
    metrics: mm ? { hostname: mm[1]!, port: Number(mm[2]) } : undefined,
    socket: socketSetting(o.socket),
    peers,
    meshListen: `0.0.0.0:${port}`,
    advertise: o.advertiseAddress,
    connLimit: intSetting("--conn-limit / CONN_LIMIT", o.connLimit ?? env.CONN_LIMIT, 0, 100000) ?? 200,
    discovery: o.discovery ?? true,
    noMasqLocal: truthy(env.NO_MASQ_LOCAL, true),
    ipallocInit,
    // In a pod, or told where a cluster is: peers come from the Node list too.
    kube: o.kubeconfig !== undefined || !!env.KUBERNETES_SERVICE_HOST,
    kubeconfig: o.kubeconfig,
  };
}

/** IPALLOC_INIT: consensus[=N] (default, N is informational: the peers are the given ones), seed=<names>, observer. */
function parseInit(text: string | undefined, peers: string[], port: number): Init | undefined {
  if (text === undefined || text === "") return undefined;
  const t = String(text);
  if (t === "observer") return { kind: "observer" };
  const seed = /^seed=(.+)$/.exec(t);
  if (seed) {
    const names = seed[1]!
      .split(",")
      .map((n) => n.trim())
      .filter(Boolean);
    const bad = names.find((n) => !isPeerName(n));
    if (bad !== undefined)
      throw new WeaveError(
        "E_BAD_FLAG",
        `--ipalloc-init / IPALLOC_INIT seed: "${bad}" is not a peer name (like 0a:1b:2c:3d:4e:5f; see weave status)`,
      );
    return { kind: "seed", names };
  }
  const cons = /^consensus(?:=(\d+))?$/.exec(t);
  if (cons) {
    if (cons[1] !== undefined && Number(cons[1]) !== peers.length + 1) {
      const claim = `--ipalloc-init / IPALLOC_INIT "${t}" says ${cons[1]} peers`;
      const given = `this node was given ${peers.length} peer(s) plus itself`;
      const fix = "give every peer's address with --peers / KUBE_PEERS";
      throw new WeaveError("E_BAD_FLAG", `${claim}, but ${given}; ${fix}`);
    }
    return { kind: "consensus", peers: peers.map((p) => (p.includes(":") ? p : `${p}:${port}`)) };
  }
  throw new WeaveError(
    "E_BAD_FLAG",
    `--ipalloc-init / IPALLOC_INIT "${t}" is not one of consensus[=N], seed=<name,...>, observer`,
  );
}

export type Password = {
  bytes: Uint8Array;
  source: string;
  /** While rotating: the next password (WEAVE_PASSWORD_NEXT, or the password file's second line). */
  next?: Uint8Array;
};

const stripNewline = (b: Uint8Array) => b.subarray(0, b.length - (b.at(-1) === 0x0a ? (b.at(-2) === 0x0d ? 2 : 1) : 0));

/**
 * The mesh password: --password-file FILE (winning, like every flag) or WEAVE_PASSWORD,
 * less one trailing newline (what `echo` and most editors leave). Its bytes as given, but
 * for newlines: a password file holds one password per line, one, or two while rotating
 * (current, then next; docs/protocol.md, "Rotation"), so random bytes go in base64.
 * WEAVE_PASSWORD_NEXT is the next one beside WEAVE_PASSWORD (or a one-line file). Set but
 * empty is an error, not "no password": an agent asked to encrypt never runs in the clear.
 */
export function readPassword(
  o: Pick<AgentOptions, "passwordFile">,
  env: Record<string, string | undefined>,
  readFile: (path: string) => Uint8Array = readFileSync,
): Password | undefined {
  let password: Password;
  if (o.passwordFile !== undefined) {
    // cac turns a flag given without a value into `true`
    if (typeof o.passwordFile !== "string" || o.passwordFile === "")
      throw new WeaveError("E_BAD_FLAG", "--password-file needs the path of a file holding the password");
    const source = `--password-file "${o.passwordFile}"`;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFile(o.passwordFile));
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new WeaveError("E_BAD_PASSWORD", `${source}: cannot read it (${why})`);
    }
    const body = stripNewline(bytes);
    const at = body.indexOf(0x0a);
    if (at < 0) password = { bytes: body, source };
    else {
      const second = body.subarray(at + 1);
      if (second.includes(0x0a))
        throw new WeaveError(
          "E_BAD_PASSWORD",
          `${source} has more than two lines: it holds one password, or two while rotating (current, then next)`,
        );
      password = { bytes: stripNewline(body.subarray(0, at + 1)), next: second, source };
      if (second.length === 0)
        throw new WeaveError("E_BAD_PASSWORD", `${source}: its second line (the next password) is empty`);
    }
  } else if (env.WEAVE_PASSWORD !== undefined) {
    password = { bytes: stripNewline(new TextEncoder().encode(env.WEAVE_PASSWORD)), source: "WEAVE_PASSWORD" };
  } else if (env.WEAVE_PASSWORD_NEXT !== undefined) {
    throw new WeaveError(
      "E_BAD_PASSWORD",
      "WEAVE_PASSWORD_NEXT is set without a current password: give WEAVE_PASSWORD (or --password-file) too",
    );
  } else return undefined;
  if (password.bytes.length === 0) {
    const fix =
      password.source === "WEAVE_PASSWORD"
        ? "give a password, or unset WEAVE_PASSWORD"
        : "put the password in the file";
    throw new WeaveError("E_BAD_PASSWORD", `${password.source} is empty: ${fix} (no password means no encryption)`);
  }
  if (password.next === undefined && env.WEAVE_PASSWORD_NEXT !== undefined) {
    password.next = stripNewline(new TextEncoder().encode(env.WEAVE_PASSWORD_NEXT));
    if (password.next.length === 0)
      throw new WeaveError("E_BAD_PASSWORD", "WEAVE_PASSWORD_NEXT is empty: give the next password, or unset it");
  }
  return password;
}

/**
 * Once the agent is ready, set the Node's NetworkUnavailable condition to False; keep
 * retrying (never crash) while the API server is away.
 */
function reportNetworkUp(kc: import("@kubernetes/client-node").KubeConfig, node: string, ready: () => boolean): void {
  let failing = false;
  const attempt = async () => {
    if (!ready()) return void setTimeout(attempt, 1000);
    try {
      const { markNetworkAvailable } = await import("../net/k8s/node-status.ts");
      await markNetworkAvailable(kc, node);
      log(`kubernetes: node ${node} condition NetworkUnavailable=False (WeaveIsUp)`);
    } catch (e) {
      if (!failing)
        log(
          `kubernetes: cannot set the NetworkUnavailable condition of node ${node} yet (${(e as Error).message}); retrying`,
        );
      failing = true;
      setTimeout(attempt, 5000);
    }
  };
  void attempt();
}

/** GET /metrics on WEAVE_METRICS_ADDR (net/metrics/agent-metrics.ts): loaded here, never by the plugin. */
async function serveMetrics(agent: Agent, at: { hostname: string; port: number }) {
  const [{ Exposition }, { registerAgentMetrics }, { registerProcessMetrics }] = await Promise.all([
    import("../net/metrics/exposition.ts"),
    import("../net/metrics/agent-metrics.ts"),
    import("../net/host/process-metrics.ts"),
  ]);
  const exp = new Exposition();
  registerProcessMetrics(exp.registries);
  exp.define((registers) => registerAgentMetrics(registers, agent));
  // Metrics are no reason to stop the network: a taken port is said loudly, and the agent runs on.
  try {
    const server = Bun.serve({ hostname: at.hostname, port: at.port, fetch: (req) => exp.handle(req) });
    log(`metrics on http://${at.hostname}:${at.port}/metrics`);
    return server;
  } catch (e) {
    log(
      `metrics: cannot listen on ${at.hostname}:${at.port} (${(e as Error).message}); no /metrics (set WEAVE_METRICS_ADDR)`,
    );
    return undefined;
  }
}

/** Sizes of the agent's growable tables, for WEAVE_DEBUG_HEAP (private fields, read for debugging only). */
function agentTables(agent: Agent): Record<string, number> {
  type Sized = { size: number };
  const r = agent.router as unknown as
    | {
        conns: Sized;
        targets: Sized;
        unreachableSince: Sized;
        gossip: { queued: Sized; requested: Sized };
        topology: { size: number };
      }
    | undefined;
  const a = agent as unknown as { lastRemotes: Sized; fading: Sized; knownConflicts: Sized };
  return {
    conns: r?.conns.size ?? 0,
    targets: r?.targets.size ?? 0,
    unreachableSince: r?.unreachableSince.size ?? 0,
    gossipQueued: r?.gossip.queued.size ?? 0,
    gossipRequested: r?.gossip.requested.size ?? 0,
    topology: r?.topology.size ?? 0,
    lastRemotes: a.lastRemotes.size,
    fading: a.fading.size,
    pods: agent.allocator?.active ?? 0,
  };
}

export async function run(o: AgentOptions): Promise<number> {
  const s = parseAgentOptions(o, process.env);
  const password = readPassword(o, process.env);
  // Nothing the agent starts (ip, nft, CNI plugins) needs to inherit it.
  delete process.env.WEAVE_PASSWORD;
  delete process.env.WEAVE_PASSWORD_NEXT;
  let psk: Uint8Array | undefined;
  let pskNext: Uint8Array | undefined;
  let generations: import("../net/crypto/rotation.ts").Generation[] | undefined;
  if (password) {
    const t0 = performance.now();
    psk = meshPsk(password.bytes, formatCidr(s.range));
    if (password.next) pskNext = meshPsk(password.next, formatCidr(s.range));
    password.bytes.fill(0);
    password.next?.fill(0);
    const took = Math.round(performance.now() - t0);
    log(
      `encryption: on, password from ${password.source}; mesh: ${NOISE_PROTOCOL}, key stretched by scrypt in ${took} ms`,
    );
    const { generations: gens } = await import("../net/crypto/rotation.ts");
    generations = gens([psk, ...(pskNext ? [pskNext] : [])]);
    if (pskNext && generations.length === 1) pskNext = undefined;
    if (pskNext)
      log(
        "encryption: rotating: two passwords (current and next); peers with either are accepted; " +
          "give every node only the next one once every peer holds it (weave status)",
      );
    log("encryption: pod traffic between nodes goes through WireGuard (weave-wg, UDP 6785), never in the clear");
  }
  const host = openHost();
  const wgSocketDir = o.wireguardSocketDir ? String(o.wireguardSocketDir) : undefined;
  const { EncryptedDatapath, disableEncryption } = await import("../net/agent/encrypted.ts");
  // The WireGuard pair PSKs are derived from the mesh's key under a label of their own (net/crypto/wg-keys.ts).
  const encryption = psk
    ? new EncryptedDatapath({ host, dataDir: s.dataDir, clusterSecret: psk, generations, socketDir: wgSocketDir, log })
    : undefined;
  if (!psk) await disableEncryption(host, wgSocketDir, log);
  // The userspace path for peers VXLAN does not reach (net/agent/sleeve-path.ts decides who).
  const { Sleeve } = await import("../net/host/sleeve.ts");
  const sleeve = new Sleeve({ tap: SLEEVE_TAP, port: SLEEVE_PORT, log: (m) => log(`sleeve: ${m}`) });
  const store = new Store(s.dataDir);
  // An empty machine-id (as in container images) is no id at all.
  const machineId = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
    .filter(existsSync)
    .map((f) => readFileSync(f, "utf8").trim())
    .find(Boolean);
  // In a cluster, taking over a deleted node's space is also claimed in the weave-net
  // ConfigMap, so two peers can never both do it.
  const kc = s.kube ? (await import("../net/k8s/client.ts")).loadKubeConfig({ kubeconfig: s.kubeconfig }) : undefined;
  // Events on our Node for what an operator must see (net/agent/node-events.ts), in a cluster only.
  const recorder = kc
    ? new (await import("../net/k8s/event-recorder.ts")).NodeEventRecorder({
        kubeConfig: kc,
        node: s.nickname,
        component: "weave-agent",
        log,
      })
    : undefined;
  recorder?.start();
  const reclaimLock = kc
    ? async (dead: string, heir: string) => (await import("../net/k8s/reclaim-lock.ts")).claimReclaim(kc, dead, heir)
    : undefined;
  const agent = new Agent(
    {
      range: s.range,
      mtu: s.mtu,
      bridge: s.bridge,
      nickname: s.nickname,
      dataDir: s.dataDir,
      peers: s.peers,
      meshListen: s.meshListen,
      advertise: s.advertise,
      connLimit: s.connLimit,
      discovery: s.discovery,
      noMasqLocal: s.noMasqLocal,
      ipallocInit: s.ipallocInit,
      kube: s.kube,
      socket: s.socket,
      meshPsk: psk,
      ...(pskNext ? { meshPskNext: pskNext } : {}),
    },
    {
      host,
      openHost,
      checkNetns: checkNetnsPath,
      store,
      log,
      transport: tcpTransport(),
      sched: realScheduler,
      masq: { apply: applyMasq, inPlace: masqInPlace, remove: removeMasq },
      machineId,
      reclaimLock,
      admission: npcAdmission,
      events: recorder ? (o) => recorder.record(o) : undefined,
      encryption,
      sleeve,
    },
  );
  const server = Bun.serve({
    hostname: s.http.hostname,
    port: s.http.port,
    fetch: (req) => handleApi(agent, req, { socket: s.socket }),
  });
  // What changes state goes over the root-only socket, with the caller's credentials from the kernel.
  const socket = serveUnixHttp(s.socket, (req, peer) => handleApi(agent, req, { caller: peer, socket: s.socket }));
  log(`API on http://${s.http.hostname}:${s.http.port} (read-only) and ${s.socket} (root), data dir ${s.dataDir}`);
  const metrics = s.metrics ? await serveMetrics(agent, s.metrics) : undefined;
  agent.start();
  let nodePeers: { stop(): Promise<void> } | undefined;
  if (kc) {
    // Loaded only in a cluster: the client library is big.
    const { NodePeers } = await import("../net/k8s/node-peers.ts");
    const np = new NodePeers({ kubeConfig: kc, nodeName: s.nickname, log, onChange: (addrs) => agent.setPeers(addrs) });
    np.start();
    nodePeers = np;
    reportNetworkUp(kc, s.nickname, () => agent.ready);
  }
  const timer = setInterval(() => agent.reconcile(), 5000);
  const stopGc = collectGarbageEvery();
  // Opt-in memory tracing for leak hunts (net/agent/debug-heap.ts): WEAVE_DEBUG_HEAP=<file>
  // ({pid} and {node} in it are replaced: one file per agent of a lab) appends the JS heap
  // before and after a forced GC (WEAVE_DEBUG_HEAP_GC=0: none), object counts by type, the
  // JIT's resident code and the agent's own table sizes every WEAVE_DEBUG_HEAP_EVERY
  // seconds (30); SIGUSR2 writes a heap snapshot beside it. Unset (the default), nothing
  // of it is loaded.
  const heapFile = process.env.WEAVE_DEBUG_HEAP?.replaceAll("{pid}", String(process.pid)).replaceAll(
    "{node}",
    s.nickname,
  );
  const stopHeapDebug = heapFile
    ? (await import("../net/agent/debug-heap.ts")).startHeapDebug(heapFile, {
        everyS: Number(process.env.WEAVE_DEBUG_HEAP_EVERY) || 30,
        gc: process.env.WEAVE_DEBUG_HEAP_GC !== "0",
        extra: () => agentTables(agent),
        log,
      })
    : undefined;

  // A graceful stop finishes its work: requests in flight are answered, retired veths
  // deleted and state written; a second signal, or STOP_GRACE_MS, ends it anyway.
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (sig: string) => {
      if (stopping) {
        log(`${sig} again: exiting now`);
        resolve(1);
        return;
      }
      stopping = true;
      log(`${sig}: stopping; finishing pending work first (the bridge and pods stay as they are)`);
      const giveUp = setTimeout(() => {
        log(`pending work not finished after ${STOP_GRACE_MS / 1000} s: exiting anyway`);
        resolve(1);
      }, STOP_GRACE_MS);
      clearInterval(timer);
      stopGc();
      stopHeapDebug?.();
      await server.stop();
      metrics?.stop(true);
      recorder?.stop();
      socket.stop();
      await nodePeers?.stop();
      agent.finishPending();
      agent.stop();
      store.close();
      host.close();
      clearTimeout(giveUp);
      log("stopped");
      resolve(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
  });
}
