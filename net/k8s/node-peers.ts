/**
 * Mesh peers from the Kubernetes Node list: list the nodes, then watch from the list's
 * resourceVersion; a watch the server ends normally (its timeout) is resumed from the
 * last resourceVersion seen, anything else (an error, 410 Expired) goes back to a full
 * list. Retries wait with exponential backoff and jitter (1 s doubling to 30 s).
 *
 * An unreachable API server is not fatal: Weave Net crash-looped there, and a node that
 * cannot list nodes can still mesh with the peers it already knows or was given. So
 * `start()` never throws; the first failure of a streak is logged once, the recovery
 * too, and the last known peers stay until a list says otherwise.
 */
import {
  CoreV1Api,
  Observable,
  Watch,
  type ConfigurationOptions,
  type KubeConfig,
  type V1Node,
} from "@kubernetes/client-node";
import { ipToNum, isIpv4 } from "../cidr.ts";
import { realScheduler, type Scheduler } from "../mesh/transport.ts";

/**
 * The address Weave peers with for a node (its KUBE_PEERS rule): the node's first IPv4
 * InternalIP, else its first IPv4 ExternalIP, else none.
 */
export function nodeAddress(node: V1Node): string | undefined {
  const addrs = node.status?.addresses ?? [];
  const first = (type: string) => addrs.find((a) => a.type === type && isIpv4(a.address))?.address;
  return first("InternalIP") ?? first("ExternalIP");
}

/** The peer addresses of a set of nodes: sorted, de-duplicated, without the local node. */
export function peerAddresses(nodes: Iterable<V1Node>, localNode: string): string[] {
  return uniqueSorted([...nodes].filter((n) => n.metadata?.name !== localNode).map(nodeAddress));
}

function uniqueSorted(addrs: Iterable<string | undefined>): string[] {
  const set = new Set([...addrs].filter((a): a is string => a !== undefined));
  return [...set].sort((x, y) => ipToNum(x) - ipToNum(y));
}

export interface NodePeersOptions {
  kubeConfig: KubeConfig;
  /** This node's name: it is no peer of itself. */
  nodeName: string;
  log: (line: string) => void;
  /** Called with the peer addresses after the first list and whenever they change. */
  onChange: (addresses: string[]) => void;
  /** Retry backoff: first delay and cap, in ms (default 1000 and 30000). */
  backoff?: { initialMs: number; maxMs: number };
  /** Seconds the server keeps one watch open (default 20-28, under the client's 30 s idle limit). */
  watchSeconds?: number;
  sched?: Scheduler;
  random?: () => number;
}

/** How one watch ended: resume from `rv`, or re-list when it is undefined. */
type WatchEnd = { rv?: string; error?: unknown };

/** Follows the Node list and reports the peer addresses; see the file note. */
export class NodePeers {
  /** True while the last list succeeded and its watch has not failed. */
  ready = false;
  /** Why the API could not be used, while it cannot. */
  lastError: string | undefined;
  /** The last addresses reported. */
  addresses: string[] = [];

  /** Address (or none) of every other node, by name; whole Node objects are big (images). */
  private nodes = new Map<string, string | undefined>();
  private published = false;
  private stopped = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private endWatch: ((end: WatchEnd) => void) | undefined;
  private readonly api: CoreV1Api;
  /** Aborts a list in flight on stop(), so stop() is prompt even when the server hangs. */
  private readonly abort = new AbortController();
  private readonly sched: Scheduler;
  private readonly random: () => number;

  constructor(private readonly opts: NodePeersOptions) {
    this.api = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.sched = opts.sched ?? realScheduler;
    this.random = opts.random ?? Math.random;
  }

  /** Starts following the nodes in the background. Never throws. */
  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the watch and the timers; resolves once the loop has stopped. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    this.endWatch?.({});
    await this.running;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let rv: string | undefined;
    while (!this.stopped) {
      try {
        if (rv === undefined) {
          rv = await this.list();
          if (this.stopped) break;
          if (failures > 0)
            this.opts.log(`kubernetes: API server reachable again, ${plural(this.addresses.length, "peer")}`);
          failures = 0;
        }
        const end = await this.watch(rv);
        rv = end.rv;
        if (end.error !== undefined) throw end.error;
      } catch (e) {
        rv = undefined;
        if (this.stopped) break;
        this.ready = false;
        this.lastError = describeError(e);
        if (failures++ === 0) {
          const server = this.opts.kubeConfig.getCurrentCluster()?.server;
          const keeping = plural(this.addresses.length, "known peer");
          this.opts.log(
            `kubernetes: cannot follow the Node list at ${server}: ${this.lastError}; ` +
              `keeping ${keeping}, retrying in the background`,
          );
        }
      }
      await this.sleep(this.delay(failures));
    }
  }

  /** Lists the nodes, publishes, returns the list's resourceVersion. */
  private async list(): Promise<string> {
    const list = await this.api.listNode({}, withSignal(this.abort.signal));
    if (this.stopped) return "";
    this.nodes = new Map();
    for (const n of list.items) this.track(n);
    this.ready = true;
    this.lastError = undefined;
    this.publish();
    return list.metadata?.resourceVersion ?? "";
  }

  /** Watches from `rv` until the stream ends; never rejects. */
  private watch(rv: string): Promise<WatchEnd> {
    return new Promise((resolve) => {
      let last = rv;
      let done = false;
      const end = (e: WatchEnd) => {
        if (done) return;
        done = true;
        this.endWatch = undefined;
        resolve(e);
      };
      this.endWatch = end;
      const onEvent = (type: string, obj: V1Node & { code?: number; message?: string }) => {
        if (type === "ERROR")
          return end(obj.code === 410 ? {} : { error: new Error(`watch error ${obj.code}: ${obj.message}`) });
        last = obj.metadata?.resourceVersion ?? last;
        if (type === "BOOKMARK") return;
        if (type === "DELETED") this.nodes.delete(obj.metadata?.name ?? "");
        else this.track(obj);
        this.publish();
      };
      // A normal end (the server's timeout, the client's idle limit) resumes from `last`.
      const onDone = (err: unknown) => end(err == null || isTimeout(err) ? { rv: last } : { error: err });
      const seconds = this.opts.watchSeconds ?? 20 + Math.floor(this.random() * 9);
      new Watch(this.opts.kubeConfig)
        .watch(
          "/api/v1/nodes",
          { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: seconds },
          onEvent,
          onDone,
        )
        .then(
          (ctl) => {
            if (done) return ctl.abort();
            this.endWatch = (e) => {
              ctl.abort();
              end(e);
            };
          },
          (err) => end({ error: err }),
        );
    });
  }

  private track(n: V1Node): void {
    const name = n.metadata?.name ?? "";
    if (name !== this.opts.nodeName) this.nodes.set(name, nodeAddress(n));
  }

  private publish(): void {
    const next = uniqueSorted(this.nodes.values());
    if (this.published && next.join() === this.addresses.join()) return;
    this.published = true;
    this.addresses = next;
    try {
      this.opts.onChange([...next]);
    } catch (e) {
      this.opts.log(`kubernetes: peer update failed: ${describeError(e)}`);
    }
  }

  private delay(failures: number): number {
    const { initialMs, maxMs } = this.opts.backoff ?? { initialMs: 1000, maxMs: 30_000 };
    const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
    return base / 2 + (base / 2) * this.random();
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const cancel = this.sched.after(ms, () => this.wake?.());
      this.wake = () => {
        cancel();
        this.wake = undefined;
        resolve();
      };
    });
  }
}

/** Request options that make a call abortable (the 2.x client takes "observable" middleware). */
function withSignal(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (res) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: "append",
  };
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
const isTimeout = (e: unknown) => e instanceof Error && e.name === "TimeoutError";

/** A one-line reason: the API's Status message, else the network error code, else the message. */
export function describeError(e: unknown): string {
  const x = e as { code?: unknown; body?: unknown; message?: string; cause?: unknown };
  if (typeof x?.code === "number" && x.body !== undefined) {
    try {
      const s = JSON.parse(String(x.body)) as { reason?: string; message?: string };
      return `HTTP ${x.code} ${s.reason ?? ""}: ${s.message ?? ""}`.trim();
    } catch {
      return `HTTP ${x.code}`;
    }
  }
  for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) {
    const code = (c as { code?: unknown }).code;
    if (typeof code !== "string") continue;
    const msg = String((c as Error).message).replace(/\s*For more information.*$/s, "");
    return msg.includes(code) ? msg : `${code}: ${msg}`;
  }
  return x?.message ?? String(e);
}
