/**
 * Upstream's netpol cluster on a lab, made once and reused by every case: a 3-node lab,
 * namespaces x, y, z and pods a, b, c in each (through the lab's API, so the real kubelet
 * path and the real plugin wire them), spread so that every namespace has a pod on every
 * node; a Service `s-<ns>-<pod>` per pod (for its ClusterIP); and a pod agent in each pod
 * serving TCP and UDP 80 and 81 and probing from it.
 *
 * Beside the lab it keeps a ModelCluster: every action goes to the API and to the model,
 * so the model's verdicts are what the lab must show. `reset` takes both back to the
 * start (policies deleted, labels restored) after every case. `down` removes what `up`
 * made, by pid and by name, whatever state `up` reached.
 */
import { LabApi } from "../../../net/lab/api-client.ts";
import { createPods, labDown, labUp } from "../../../net/lab/lab.ts";
import { inNs } from "../../../net/lab/plugin.ts";
import { readLab, type LabState } from "../../../net/lab/state.ts";
import { uniqueName } from "../env.ts";
import { tools } from "../lab.ts";
import type { Labels, ModelCluster, NetworkPolicy } from "./model.ts";
import type { ProbeResult } from "./pod-agent.ts";
import { PodAgents, type Target } from "./pod-agents.ts";
import {
  type Action,
  applyToModel,
  initialCluster,
  NAMED_PORTS,
  NAMESPACES,
  POD_KEYS,
  POD_NAMES,
  type Probe,
  SERVE_PORTS,
} from "./scenario.ts";
import { installServiceDnat, removeServiceDnat, type ServicePort } from "./service-dnat.ts";
import type { PodKey } from "./truth-table.ts";

const HAND_DROP_TABLE = "netpol-hand-drop";
const NP_PATH = (ns: string) => `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`;

type LabPodInfo = { ip: string; netns: string; node: string };

export class NetpolLab {
  readonly name = uniqueName("np");
  private state?: LabState;
  private api?: LabApi;
  private readonly agents = new PodAgents();
  private readonly pods = new Map<PodKey, LabPodInfo>();
  private readonly clusterIps = new Map<PodKey, string>();
  private dnatNodes: string[] = [];
  private readonly handDropNodes: string[] = [];
  model!: ModelCluster;

  /** Bring it all up; on a failure, remove what was made and throw. */
  async up(): Promise<void> {
    try {
      await this.make();
    } catch (e) {
      await this.down();
      throw e;
    }
  }

  private async make(): Promise<void> {
    this.state = await labUp(this.name, 3, 0, tools);
    this.api = new LabApi(this.state.controlPlane!.url);
    for (const ns of NAMESPACES) await this.api.create("/api/v1/namespaces", { metadata: { name: ns } });
    const nodes = this.state.nodes.map((n) => n.name);
    const wanted = POD_KEYS.map((key, i) => {
      const [namespace, name] = key.split("/") as [string, string];
      // pod p of namespace n on node (p + n) % 3: each namespace on every node, same- and cross-node pairs
      const [n, p] = [Math.floor(i / POD_NAMES.length), i % POD_NAMES.length];
      const node = nodes[(p + n) % nodes.length]!;
      const ports = NAMED_PORTS.map((p) => ({ name: p.name, port: p.containerPort, protocol: p.protocol }));
      return { name, namespace, node, labels: { pod: name }, ports };
    });
    await createPods(this.state, wanted);
    const lab = readLab(this.name)!;
    for (const key of POD_KEYS) {
      const [namespace, name] = key.split("/");
      const p = lab.pods.find((x) => x.namespace === namespace && x.name === name)!;
      this.pods.set(key, { ip: p.ip, netns: p.netns, node: p.node });
    }
    for (const key of POD_KEYS) await this.createService(key);
    await Promise.all(POD_KEYS.map((key) => this.agents.start(key, this.pods.get(key)!.netns, [...SERVE_PORTS])));
    this.model = initialCluster((k) => this.ip(k));
  }

  ip(key: PodKey): string {
    return this.pods.get(key)!.ip;
  }

  /** Where each pod runs, for the log: "x/a 10.32.0.2 n1". */
  layout(): string {
    const short = (node: string) => node.slice(this.name.length + 1);
    return POD_KEYS.map((k) => `${k} ${this.ip(k)} ${short(this.pods.get(k)!.node)}`).join(", ");
  }

  private async createService(key: PodKey): Promise<void> {
    const [ns, pod] = key.split("/") as [string, string];
    const ports = NAMED_PORTS.map((p) => ({
      name: p.name,
      port: p.containerPort,
      targetPort: p.containerPort,
      protocol: p.protocol,
    }));
    const svc = await this.api!.create(`/api/v1/namespaces/${ns}/services`, {
      metadata: { name: `s-${ns}-${pod}` },
      spec: { selector: { pod }, ports },
    });
    this.clusterIps.set(key, svc.spec.clusterIP);
  }

  /** Apply an action to the API and to the model. */
  async apply(a: Action): Promise<void> {
    switch (a.kind) {
      case "create-policy":
        await this.api!.create(NP_PATH(a.policy.metadata.namespace), policyObject(a.policy));
        break;
      case "update-policy": {
        const path = `${NP_PATH(a.policy.metadata.namespace)}/${a.policy.metadata.name}`;
        const current = await this.api!.get(path);
        const body = policyObject(a.policy);
        body.metadata.resourceVersion = current?.metadata?.resourceVersion;
        await this.expectOk("PUT", path, body);
        break;
      }
      case "delete-policies":
        await this.deletePolicies();
        break;
      case "add-namespace-labels":
        await this.patchLabels(`/api/v1/namespaces/${a.namespace}`, a.labels);
        break;
      case "add-pod-labels": {
        const [ns, pod] = a.pod.split("/");
        await this.patchLabels(`/api/v1/namespaces/${ns}/pods/${pod}`, a.labels);
        break;
      }
    }
    this.model = applyToModel(this.model, a);
  }

  /** Back to the start: no policies in x, y, z; namespaces and pods with their original labels only. */
  async reset(): Promise<void> {
    await this.deletePolicies();
    for (const ns of NAMESPACES)
      await this.restoreLabels(`/api/v1/namespaces/${ns}`, { "kubernetes.io/metadata.name": ns });
    for (const key of POD_KEYS) {
      const [ns, pod] = key.split("/") as [string, string];
      await this.restoreLabels(`/api/v1/namespaces/${ns}/pods/${pod}`, { pod });
    }
    this.model = initialCluster((k) => this.ip(k));
  }

  private async deletePolicies(): Promise<void> {
    for (const ns of NAMESPACES) {
      const list = await this.api!.get(NP_PATH(ns));
      for (const p of list?.items ?? []) await this.api!.delete(`${NP_PATH(ns)}/${p.metadata.name}`);
    }
  }

  private async patchLabels(path: string, labels: Record<string, string | null>): Promise<void> {
    const body = { metadata: { labels } };
    await this.expectOk("PATCH", path, body, "application/merge-patch+json");
  }

  private async restoreLabels(path: string, original: Labels): Promise<void> {
    const current: Labels = (await this.api!.get(path))?.metadata?.labels ?? {};
    const patch: Record<string, string | null> = { ...original };
    for (const k of Object.keys(current)) if (!(k in original)) patch[k] = null;
    const same = Object.keys(patch).every((k) => (patch[k] === null ? !(k in current) : current[k] === patch[k]));
    if (!same) await this.patchLabels(path, patch);
  }

  private async expectOk(method: string, path: string, body: unknown, type = "application/json"): Promise<void> {
    const res = await fetch(`${this.state!.controlPlane!.url}${path}`, {
      method,
      headers: { "content-type": type },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  }

  /** Probe every ordered pair once for `probe`: observed[from][to], and each probe's outcome. */
  async observe(probe: Probe): Promise<Map<PodKey, Map<PodKey, ProbeResult>>> {
    const targets = new Map<string, Target[]>();
    for (const client of POD_KEYS)
      targets.set(
        client,
        POD_KEYS.map((server) => ({
          ip: probe.via === "service" ? this.clusterIps.get(server)! : this.ip(server),
          port: probe.port,
          protocol: probe.protocol,
        })),
      );
    const results = await this.agents.probeAll(targets);
    return new Map(
      POD_KEYS.map((client) => [client, new Map(POD_KEYS.map((server, i) => [server, results.get(client)![i]!]))]),
    );
  }

  /** Run `fn` with Service DNAT in place on every node (every node holds clients); removed after, always. */
  async withServiceDnat<T>(fn: () => Promise<T>): Promise<T> {
    const ports: ServicePort[] = POD_KEYS.flatMap((key) =>
      NAMED_PORTS.map((p) => ({
        service: `s-${key.replace("/", "-")}`,
        clusterIp: this.clusterIps.get(key)!,
        port: p.containerPort,
        protocol: p.protocol,
        endpoint: this.ip(key),
      })),
    );
    this.dnatNodes = installServiceDnat(
      this.state!.nodes.map((n) => n.netns),
      ports,
    );
    try {
      return await fn();
    } finally {
      removeServiceDnat(this.dnatNodes);
      this.dnatNodes = [];
    }
  }

  /**
   * Run `fn` while a drop made by hand stands in for the controller: on `server`'s node,
   * new connections to it from anyone but `onlyFrom` are dropped (forward hook: bridged
   * traffic passes it, as br_netfilter is on in the lab's nodes). Removed after, always.
   * It shows that the probes see a denial where one is, to the pod and after DNAT.
   */
  async withHandDrop<T>(server: PodKey, onlyFrom: PodKey, fn: () => Promise<T>): Promise<T> {
    const node = this.pods.get(server)!.node;
    const rule = `ip daddr ${this.ip(server)} ip saddr != ${this.ip(onlyFrom)} ct state new drop`;
    const script = `table inet ${HAND_DROP_TABLE} {\n  chain forward { type filter hook forward priority 0; policy accept; ${rule}; }\n}\n`;
    const r = inNs(node, ["nft", "-f", "-"], { stdin: script });
    if (r.code !== 0) throw new Error(`nft in ${node}: ${r.stderr.trim()}`);
    this.handDropNodes.push(node);
    try {
      return await fn();
    } finally {
      this.removeHandDrops();
    }
  }

  private removeHandDrops(): void {
    for (const node of this.handDropNodes.splice(0)) inNs(node, ["nft", "delete", "table", "inet", HAND_DROP_TABLE]);
  }

  /** Remove everything, whatever `up` reached: DNAT tables, pod agents (by pid), then the lab (by lab.json). */
  async down(): Promise<void> {
    removeServiceDnat(this.dnatNodes);
    this.removeHandDrops();
    await this.agents.stop();
    if (readLab(this.name)) await labDown(this.name, tools);
  }
}

/** The policy as the API gets it. */
function policyObject(p: NetworkPolicy) {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: p.metadata.name, namespace: p.metadata.namespace } as Record<string, unknown>,
    spec: structuredClone(p.spec),
  };
}
