/**
 * The agent's Events on its Node, written to the API: the effectful half of
 * net/events/aggregator.ts. Occurrences go into the aggregator; a timer (and every new
 * occurrence) asks it for the writes that are due and makes them: a POST that creates
 * the series' Event (shaped as kubelet's are, so `kubectl describe node` lists it), then
 * strategic-merge PATCHes of its count, lastTimestamp and message. A PATCH answered 404
 * (the API's event TTL removed it) creates the Event again; any other failure is retried
 * later, and logged once per failing spell: events never crash or block the agent.
 */
import { ApiException, CoreV1Api, type KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { EventAggregator, type EventWrite, type Occurrence } from "../events/aggregator.ts";
import { nodeEvent } from "./install.ts";
import { describeError } from "./node-peers.ts";

export type RecorderOptions = {
  kubeConfig: KubeConfig;
  node: string;
  component: string;
  log(msg: string): void;
  now?: () => number;
  /** How often due writes are looked for (the aggregator decides what is due). */
  tickMs?: number;
  aggregator?: Partial<ConstructorParameters<typeof EventAggregator>[0]>;
};

/** The API's timestamps: RFC 3339 to the second. */
const apiTime = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export class NodeEventRecorder {
  private readonly agg: EventAggregator;
  private readonly core: CoreV1Api;
  private readonly now: () => number;
  private timer?: ReturnType<typeof setInterval>;
  private uid?: string;
  private seq = 0;
  private failing = false;
  private flushing = false;

  constructor(private readonly o: RecorderOptions) {
    this.now = o.now ?? Date.now;
    this.agg = new EventAggregator({ now: this.now, ...o.aggregator });
    this.core = o.kubeConfig.makeApiClient(CoreV1Api);
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.o.tickMs ?? 1000);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  record(occ: Occurrence): void {
    this.agg.record(occ);
    void this.flush();
  }

  /** Makes the writes that are due, one after another. */
  async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const w of this.agg.due()) await this.write(w);
    } finally {
      this.flushing = false;
    }
  }

  private async write(w: EventWrite): Promise<void> {
    try {
      const name = w.op === "create" ? await this.create(w) : await this.patch(w);
      this.agg.done(w, name);
      if (this.failing) this.o.log(`kubernetes: recording events on node ${this.o.node} works again`);
      this.failing = false;
    } catch (e) {
      const gone = w.op === "patch" && e instanceof ApiException && e.code === 404;
      this.agg.failed(w, gone);
      if (!gone && !this.failing)
        this.o.log(`kubernetes: cannot record events on node ${this.o.node} yet (${describeError(e)}); retrying`);
      this.failing = !gone;
    }
  }

  private async create(w: Extract<EventWrite, { op: "create" }>): Promise<string> {
    if (this.uid === undefined)
      this.uid = await this.core.readNode({ name: this.o.node }).then(
        (n) => n.metadata?.uid,
        () => undefined,
      );
    const body = nodeEvent({ name: this.o.node, uid: this.uid }, w.reason, w.message, this.o.component, new Date());
    // names as client-go makes them (object name, a dot, a time in hex), unique per write
    body.metadata = {
      ...body.metadata,
      name: `${this.o.node}.${(this.now() * 1000 + (this.seq++ % 1000)).toString(16)}`,
    };
    body.type = w.type;
    body.count = w.count;
    body.firstTimestamp = new Date(apiTime(w.firstTimestamp));
    body.lastTimestamp = new Date(apiTime(w.lastTimestamp));
    const made = await this.core.createNamespacedEvent({ namespace: "default", body });
    return made.metadata?.name ?? body.metadata.name!;
  }

  private async patch(w: Extract<EventWrite, { op: "patch" }>): Promise<string> {
    const body = { count: w.count, lastTimestamp: apiTime(w.lastTimestamp), message: w.message };
    await this.core.patchNamespacedEvent(
      { name: w.name, namespace: "default", body },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    );
    return w.name;
  }
}
