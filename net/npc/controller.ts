/**
 * `weave npc` on one node: NetworkPolicies, Pods and Namespaces followed as caches
 * (watch.ts); on any change (debounced) and periodically, desired table = compile(caches,
 * this node, the kernel's pending entries), transaction = diff(kernel, desired), applied
 * in one `nft -f -`. The kernel is read again before each sync, so a rule changed behind
 * our back is put right by the next periodic pass.
 *
 * Nothing is written before all three caches have been listed once: a controller that
 * restarts leaves the kernel's table (the last one's rules) enforcing until its first
 * full sync replaces it in one transaction, so an isolated pod is never open in between.
 * Stopping writes nothing either: the rules stay (fail closed).
 */
import { CoreV1Api, type KubeConfig, NetworkingV1Api } from "@kubernetes/client-node";
import type { LoggedPacket } from "../host/nflog.ts";
import { compile } from "../policy/compile.ts";
import {
  type ClusterState,
  type Namespace,
  namespaceFromApi,
  type Pod,
  podFromApi,
  policyFromApiOrClosed,
} from "../policy/model.ts";
import { diffTables } from "../policy/nft-diff.ts";
import type { NftTable, Transaction } from "../policy/nft-model.ts";
import { DropReporter } from "./drops.ts";
import { type ApiObject, ResourceWatch } from "./watch.ts";

export type NpcKernel = { read(): NftTable | undefined; apply(tx: Transaction): void };

export type NpcOptions = {
  node: string;
  kubeConfig: KubeConfig;
  kernel: NpcKernel;
  log: (line: string) => void;
  /** The kernel's dropped-connection log (NFLOG), polled. */
  drops?: { poll(): LoggedPacket[] };
  debounceMs?: number;
  /** The periodic full reconcile against the kernel. */
  resyncMs?: number;
};

export class NpcController {
  /** True once the kernel holds what the first full list asked for. */
  synced = false;
  syncs = 0;
  errors = 0;
  lastError: string | undefined;
  lastSyncMs = 0;
  /** What the last good sync put in the kernel (weave npc's /metrics). */
  enforced = { policies: 0, localPods: 0, chains: 0, rules: 0 };
  private syncListeners: ((ms: number, ok: boolean) => void)[] = [];
  readonly reporter: DropReporter;
  private readonly watches: ResourceWatch[];
  private readonly pods: ResourceWatch;
  private readonly namespaces: ResourceWatch;
  private readonly policies: ResourceWatch;
  private timer?: ReturnType<typeof setTimeout>;
  private intervals: ReturnType<typeof setInterval>[] = [];
  private syncing = false;
  private again = false;
  private badPolicies = new Map<string, string>();
  private lastState: ClusterState = { pods: [], namespaces: new Map(), policies: [] };

  constructor(private readonly o: NpcOptions) {
    const core = o.kubeConfig.makeApiClient(CoreV1Api);
    const net = o.kubeConfig.makeApiClient(NetworkingV1Api);
    const follow = (path: string, list: () => Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }>) =>
      new ResourceWatch({
        kubeConfig: o.kubeConfig,
        path,
        list: async () => {
          const l = await list();
          return { items: l.items as ApiObject[], resourceVersion: l.metadata?.resourceVersion ?? "" };
        },
        onChange: () => this.schedule(),
        log: o.log,
      });
    this.pods = follow("/api/v1/pods", () => core.listPodForAllNamespaces());
    this.namespaces = follow("/api/v1/namespaces", () => core.listNamespace());
    this.policies = follow("/apis/networking.k8s.io/v1/networkpolicies", () => net.listNetworkPolicyForAllNamespaces());
    this.watches = [this.policies, this.pods, this.namespaces];
    this.reporter = new DropReporter({ log: o.log, node: o.node });
  }

  start(): void {
    for (const w of this.watches) w.start();
    this.intervals.push(setInterval(() => this.schedule(), this.o.resyncMs ?? 30_000));
    if (this.o.drops) this.intervals.push(setInterval(() => this.pollDrops(), 200));
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    for (const i of this.intervals) clearInterval(i);
    await Promise.all(this.watches.map((w) => w.stop()));
  }

  /** Called after every sync pass with its duration and whether it worked. */
  onSync(cb: (ms: number, ok: boolean) => void): void {
    this.syncListeners.push(cb);
  }

  /** Why the controller is not synced, or "synced". */
  get status(): string {
    if (this.synced) return "synced";
    const waiting = this.watches.filter((w) => !w.synced).map((w) => w.lastError ?? "listing");
    return waiting.length ? `waiting for the API: ${waiting.join("; ")}` : (this.lastError ?? "syncing");
  }

  /** The cluster as the caches have it now. */
  state(): ClusterState {
    const pods = [...this.pods.items.values()].map((p) => podFromApi(p)).filter((p): p is Pod => p !== undefined);
    const namespaces = new Map<string, Namespace>();
    for (const n of this.namespaces.items.values()) {
      const ns = namespaceFromApi(n);
      namespaces.set(ns.name, ns);
    }
    const policies = [...this.policies.items.values()].map((np) => {
      const { policy, error } = policyFromApiOrClosed(np);
      const id = `${policy.namespace}/${policy.name}`;
      if (error && this.badPolicies.get(id) !== error.message)
        this.o.log(`policy ${id}: ${error.message}; it isolates what it selects and allows nothing`);
      if (error) this.badPolicies.set(id, error.message);
      else this.badPolicies.delete(id);
      return policy;
    });
    return { pods, namespaces, policies };
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sync();
    }, this.o.debounceMs ?? 50);
  }

  /** One pass: compile, diff against the kernel, apply. Passes never overlap. */
  async sync(): Promise<void> {
    if (!this.watches.every((w) => w.synced)) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    const started = performance.now();
    try {
      const state = this.state();
      const kernel = this.o.kernel.read();
      const desired = compile({ state, node: this.o.node, kernel });
      const tx = diffTables(kernel, desired);
      this.o.kernel.apply(tx);
      this.lastState = state;
      this.lastSyncMs = performance.now() - started;
      this.syncs++;
      this.lastError = undefined;
      const chains = [...desired.chains.values()];
      this.enforced = {
        policies: state.policies.length,
        localPods: state.pods.filter((p) => p.node === this.o.node).length,
        chains: chains.length,
        rules: chains.reduce((n, c) => n + c.rules.length, 0),
      };
      for (const l of this.syncListeners) l(this.lastSyncMs, true);
      if (!tx.empty) this.o.log(summary(tx, desired, this.lastSyncMs, !kernel));
      if (!this.synced) {
        const local = state.pods.filter((p) => p.node === this.o.node).length;
        this.o.log(`synced: ${state.policies.length} policies, ${local} pods on ${this.o.node}`);
      }
      this.synced = true;
    } catch (e) {
      this.errors++;
      this.lastError = (e as Error).message;
      for (const l of this.syncListeners) l(performance.now() - started, false);
      this.o.log(`sync failed (the kernel keeps its rules; retrying): ${this.lastError}`);
      setTimeout(() => this.schedule(), 1000);
    } finally {
      this.syncing = false;
    }
    if (this.again) {
      this.again = false;
      this.schedule();
    }
  }

  private pollDrops(): void {
    try {
      const packets = this.o.drops!.poll();
      if (packets.length) this.reporter.report(packets, this.synced ? this.lastState : this.state());
    } catch (e) {
      this.o.log(`reading dropped connections: ${(e as Error).message}`);
    }
  }
}

/** One line per applied transaction: what kinds of change, how many. */
function summary(tx: Transaction, desired: NftTable, ms: number, created: boolean): string {
  const counts = new Map<string, number>();
  for (const c of tx.commands) {
    const kind = c.split(" ").slice(0, 2).join(" ");
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  const parts = [...counts].map(([k, n]) => `${n} ${k}`).join(", ");
  const chains = [...desired.chains.keys()].filter((n) => /^(ingress|egress)\//.test(n)).length;
  const what = created ? "created table inet weave-npc" : "applied";
  return `${what}: ${parts} (${chains} pod chains; ${ms.toFixed(1)} ms)`;
}
