/**
 * One resource followed as a local cache: list, then watch from the list's
 * resourceVersion; a watch the server ends normally (its timeout) resumes from the last
 * resourceVersion seen, a 410 Gone (or any error) goes back to a full list, after a
 * backoff (500 ms doubling to 30 s, with jitter) when it failed. The same loop as the
 * agent's Node list (net/k8s/node-peers.ts), for any kind, keyed by namespace/name.
 *
 * `synced` turns true after the first list and stays true: a cache that cannot be
 * refreshed keeps what it had (the kernel keeps enforcing it), never empties itself.
 */
import { type KubeConfig, Watch } from "@kubernetes/client-node";
import { describeError } from "../k8s/node-peers.ts";

/** An object as the API sends it (only its metadata is read here). */
export type ApiObject = {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  // biome-ignore lint/suspicious/noExplicitAny: the rest of a Kubernetes object, read by the model
  [field: string]: any;
};

export type ResourceWatchOptions = {
  kubeConfig: KubeConfig;
  /** The collection's path, e.g. /api/v1/pods. */
  path: string;
  /** Lists it: the items and the list's resourceVersion. */
  list: () => Promise<{ items: ApiObject[]; resourceVersion: string }>;
  onChange: () => void;
  log: (line: string) => void;
  watchSeconds?: number;
};

/** The server no longer has the history a watch asked for (410): list again, at once. */
class GoneError extends Error {}

const key = (o: ApiObject) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

export class ResourceWatch {
  readonly items = new Map<string, ApiObject>();
  synced = false;
  lastError: string | undefined;
  private stopped = false;
  private running?: Promise<void>;
  private abortWatch?: () => void;
  private wake?: () => void;

  constructor(private readonly o: ResourceWatchOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abortWatch?.();
    this.wake?.();
    await this.running;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let rv: string | undefined;
    while (!this.stopped) {
      try {
        if (rv === undefined) {
          rv = await this.relist();
          if (failures > 0) this.o.log(`${this.o.path}: listed again after ${failures} failure(s)`);
          failures = 0;
        }
        rv = await this.watch(rv);
        continue;
      } catch (e) {
        rv = undefined;
        if (this.stopped) break;
        if (e instanceof GoneError) continue;
        this.lastError = describeError(e);
        if (failures++ === 0) this.o.log(`${this.o.path}: ${this.lastError}; keeping what is known, retrying`);
      }
      const base = Math.min(30_000, 500 * 2 ** Math.max(0, failures - 1));
      await this.sleep(base / 2 + (base / 2) * Math.random());
    }
  }

  private async relist(): Promise<string> {
    const { items, resourceVersion } = await this.o.list();
    this.items.clear();
    for (const item of items) this.items.set(key(item), item);
    this.synced = true;
    this.lastError = undefined;
    this.o.onChange();
    return resourceVersion;
  }

  /** Watches from `rv`; resolves with the resourceVersion to resume from, rejects to re-list. */
  private watch(rv: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let last = rv;
      let done = false;
      const finish = (err?: unknown) => {
        if (done) return;
        done = true;
        this.abortWatch = undefined;
        if (err) reject(err);
        else resolve(last);
      };
      const onEvent = (type: string, obj: ApiObject & { code?: number; message?: string }) => {
        if (type === "ERROR" && obj.code === 410) return finish(new GoneError());
        if (type === "ERROR") return finish(new Error(`watch: ${obj.code} ${obj.message ?? ""}`.trim()));
        last = obj.metadata?.resourceVersion ?? last;
        if (type === "BOOKMARK") return;
        if (type === "DELETED") this.items.delete(key(obj));
        else this.items.set(key(obj), obj);
        this.o.onChange();
      };
      const onDone = (err: unknown) => finish(err == null || (err as Error).name === "TimeoutError" ? undefined : err);
      const timeoutSeconds = this.o.watchSeconds ?? 20 + Math.floor(Math.random() * 9);
      const query = { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds };
      new Watch(this.o.kubeConfig).watch(this.o.path, query, onEvent, onDone).then(
        (ctl) => {
          if (done) return ctl.abort();
          this.abortWatch = () => {
            ctl.abort();
            finish();
          };
        },
        (err) => finish(err),
      );
    });
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
