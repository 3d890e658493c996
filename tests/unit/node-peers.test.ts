/**
 * Peers from the Node list (net/k8s/node-peers.ts) and the client config
 * (net/k8s/client.ts), against the stand-in API server (net/lab/api-server.ts)
 * with the real client, in real time with short backoffs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiException, type V1Node } from "@kubernetes/client-node";
import { loadKubeConfig, SERVICE_ACCOUNT_DIR } from "../../net/k8s/client.ts";
import {
  describeError as reason,
  NodePeers,
  nodeAddress,
  peerAddresses,
  type NodePeersOptions,
} from "../../net/k8s/node-peers.ts";
import { WeaveError } from "../../net/errors.ts";
import { realScheduler } from "../../net/mesh/transport.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";
import { until as waitUntil } from "../support/wait.ts";

type Addr = { type: string; address: string };
const node = (name: string, ...addresses: Addr[]): V1Node => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name },
  status: { addresses },
});
const internal = (address: string) => ({ type: "InternalIP", address });
const external = (address: string) => ({ type: "ExternalIP", address });

/** This file's waits: 4000 ms at most, polling every 10 ms. */
const until = <T>(f: () => T | undefined | false, ms = 4000) => waitUntil(f, ms, 10);

describe("nodeAddress and peerAddresses", () => {
  test("InternalIP, else ExternalIP, IPv4 only", () => {
    expect(nodeAddress(node("a", external("203.0.113.1"), internal("198.18.0.1")))).toBe("198.18.0.1");
    expect(nodeAddress(node("a", external("203.0.113.1")))).toBe("203.0.113.1");
    expect(nodeAddress(node("a", internal("fd00::1"), external("203.0.113.1")))).toBe("203.0.113.1");
    expect(nodeAddress(node("a", { type: "Hostname", address: "a" }))).toBeUndefined();
    expect(nodeAddress({ metadata: { name: "bare" } })).toBeUndefined();
  });
  test("sorted by address, de-duplicated, without the local node", () => {
    const nodes = [
      node("me", internal("198.18.0.1")),
      node("b", internal("198.18.0.10")),
      node("c", internal("198.18.0.9")),
      node("d", internal("198.18.0.9")),
    ];
    expect(peerAddresses(nodes, "me")).toEqual(["198.18.0.9", "198.18.0.10"]);
  });
  test("a failure in one line: the API's Status, else the network error code", () => {
    const status = {
      kind: "Status",
      reason: "Forbidden",
      message: 'nodes is forbidden: User "x" cannot list resource "nodes"',
      code: 403,
    };
    expect(reason(new ApiException(403, "Unknown API Status Code!", JSON.stringify(status), {}))).toBe(
      `HTTP 403 Forbidden: ${status.message}`,
    );
    const refused = new TypeError("fetch failed", {
      cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" }),
    });
    expect(reason(refused)).toBe("connect ECONNREFUSED 127.0.0.1:6443");
  });
});

describe("NodePeers against the stand-in", () => {
  const servers: ApiServer[] = [];
  const running: NodePeers[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  async function world(nodes: V1Node[], o: Partial<NodePeersOptions> = {}) {
    const api = await startApiServer();
    servers.push(api);
    for (const n of nodes) api.store.put(n);
    const seen: string[][] = [];
    const logs: string[] = [];
    let sleeps = 0;
    const sched = {
      now: () => Date.now(),
      after: (ms: number, fn: () => void) => {
        sleeps++;
        return realScheduler.after(ms, fn);
      },
    };
    const peers = new NodePeers({
      kubeConfig: api.kubeConfig,
      nodeName: "me",
      log: (l) => logs.push(l),
      onChange: (a) => seen.push(a),
      backoff: { initialMs: 20, maxMs: 200 },
      sched,
      ...o,
    });
    running.push(peers);
    const last = () => seen.at(-1)?.join(" ");
    return { api, peers, seen, logs, last, sleeps: () => sleeps };
  }

  test("the first list gives the peers; adds, deletes and address changes follow", async () => {
    const w = await world([
      node("me", internal("198.18.0.1")),
      node("n2", internal("198.18.0.2"), external("203.0.113.2")),
      node("n3", external("203.0.113.3")),
      node("n4"),
    ]);
    w.peers.start();
    await until(() => w.peers.ready);
    expect(w.seen).toEqual([["198.18.0.2", "203.0.113.3"]]);
    expect(w.peers.addresses).toEqual(["198.18.0.2", "203.0.113.3"]);

    w.api.store.put(node("n5", internal("198.18.0.5")));
    await until(() => w.last() === "198.18.0.2 198.18.0.5 203.0.113.3");
    w.api.store.put(node("n4", internal("198.18.0.4")));
    await until(() => w.last() === "198.18.0.2 198.18.0.4 198.18.0.5 203.0.113.3");
    w.api.store.put(node("n2", internal("198.18.0.22")));
    await until(() => w.last() === "198.18.0.4 198.18.0.5 198.18.0.22 203.0.113.3");
    w.api.store.delete("v1", "Node", "n3");
    await until(() => w.last() === "198.18.0.4 198.18.0.5 198.18.0.22");
    // a change that leaves the set alone (labels, the local node) reports nothing
    const before = w.seen.length;
    w.api.store.put({ ...node("n5", internal("198.18.0.5")), metadata: { name: "n5", labels: { a: "b" } } });
    w.api.store.put(node("me", internal("198.18.0.100")));
    w.api.store.put(node("n6", internal("198.18.0.6")));
    await until(() => w.last()?.includes("198.18.0.6"));
    expect(w.seen.length).toBe(before + 1);
    expect(w.logs).toEqual([]);
  });

  test("API server down at start: no throw, one log line, then peers once it is up", async () => {
    const w = await world([node("me", internal("198.18.0.1")), node("n2", internal("198.18.0.2"))]);
    await w.api.down();
    expect(() => w.peers.start()).not.toThrow();
    await until(() => w.sleeps() >= 5);
    expect(w.peers.ready).toBe(false);
    expect(w.peers.lastError).toContain("ECONNREFUSED");
    expect(w.logs).toHaveLength(1);
    expect(w.logs[0]).toContain(`cannot follow the Node list at ${w.api.url}`);
    expect(w.seen).toEqual([]);

    await w.api.up();
    await until(() => w.peers.ready);
    expect(w.seen).toEqual([["198.18.0.2"]]);
    expect(w.peers.lastError).toBeUndefined();
    expect(w.logs).toHaveLength(2);
    expect(w.logs[1]).toContain("reachable again");
    if (process.env.SHOW_LOGS) console.log(w.logs);
  });

  test("a broken watch recovers: changes made while the server was down arrive", async () => {
    const w = await world([node("n2", internal("198.18.0.2"))]);
    w.peers.start();
    await until(() => w.last() === "198.18.0.2");
    await w.api.down();
    await until(() => !w.peers.ready);
    // the known peers are kept while the API is away
    expect(w.peers.addresses).toEqual(["198.18.0.2"]);
    w.api.store.put(node("n3", internal("198.18.0.3")));
    await w.api.up();
    await until(() => w.last() === "198.18.0.2 198.18.0.3");
    w.api.store.delete("v1", "Node", "n2");
    await until(() => w.last() === "198.18.0.3");
    expect(w.peers.ready).toBe(true);
    if (process.env.SHOW_LOGS) console.log(w.logs);
  });

  test("a watch the server ends is resumed; an expired resourceVersion re-lists", async () => {
    const w = await world([node("n2", internal("198.18.0.2"))], { watchSeconds: 1 });
    w.peers.start();
    await until(() => w.peers.ready);
    const watches = () => w.api.requests.filter((r) => r.query.includes("watch=true")).length;
    const lists = () =>
      w.api.requests.filter((r) => r.path === "/api/v1/nodes" && !r.query.includes("watch=true")).length;
    await until(() => watches() >= 2);
    expect(lists()).toBe(1);
    w.api.store.put(node("n3", internal("198.18.0.3")));
    await until(() => w.last() === "198.18.0.2 198.18.0.3");
    // Other kinds move the resourceVersion on without the node watch seeing it; once the
    // history is forgotten, resuming from the last node event is 410 Expired: list again.
    w.api.store.put({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x", namespace: "default" } });
    w.api.store.compact();
    await until(() => lists() >= 2);
    w.api.store.put(node("n4", internal("198.18.0.4")));
    await until(() => w.last() === "198.18.0.2 198.18.0.3 198.18.0.4");
    expect(w.logs).toEqual([]);
  }, 10_000);

  test("stop() ends the watch and the retries promptly", async () => {
    const w = await world([node("n2", internal("198.18.0.2"))], { backoff: { initialMs: 10_000, maxMs: 10_000 } });
    w.peers.start();
    await until(() => w.peers.ready);
    let t = Date.now();
    await w.peers.stop();
    expect(Date.now() - t).toBeLessThan(1000);

    await w.api.down();
    const again = new NodePeers({
      kubeConfig: w.api.kubeConfig,
      nodeName: "me",
      log: () => {},
      onChange: () => {},
      backoff: { initialMs: 10_000, maxMs: 10_000 },
    });
    again.start();
    await until(() => again.lastError);
    t = Date.now();
    await again.stop();
    expect(Date.now() - t).toBeLessThan(1000);
  });
});

describe("loadKubeConfig", () => {
  let api: ApiServer;
  let dir: string;
  beforeAll(async () => {
    api = await startApiServer();
    dir = mkdtempSync(join(tmpdir(), "weave-kc-"));
  });
  afterAll(async () => {
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (e instanceof WeaveError) return [e.code, e.message];
      throw e;
    }
    return ["no error"];
  };

  test("the flag, else KUBECONFIG, else ~/.kube/config", () => {
    expect(loadKubeConfig({ kubeconfig: api.kubeconfigPath, env: {} }).getCurrentCluster()?.server).toBe(api.url);
    expect(loadKubeConfig({ env: { KUBECONFIG: api.kubeconfigPath } }).getCurrentCluster()?.server).toBe(api.url);
    mkdirSync(join(dir, ".kube"), { recursive: true });
    copyFileSync(api.kubeconfigPath, join(dir, ".kube", "config"));
    expect(loadKubeConfig({ env: {}, home: dir }).getCurrentCluster()?.server).toBe(api.url);
    // the flag wins over the in-cluster config
    expect(
      loadKubeConfig({
        kubeconfig: api.kubeconfigPath,
        env: { KUBERNETES_SERVICE_HOST: "10.96.0.1" },
      }).getCurrentCluster()?.server,
    ).toBe(api.url);
  });

  test("a missing or broken file, or an unknown context, is E_KUBECONFIG naming it", () => {
    const missing = join(dir, "nope");
    const [c1, m1] = code(() => loadKubeConfig({ kubeconfig: missing, env: {} }));
    expect(c1).toBe("E_KUBECONFIG");
    expect(m1).toContain(missing);
    const broken = join(dir, "broken");
    writeFileSync(broken, "clusters: [ {");
    expect(code(() => loadKubeConfig({ kubeconfig: broken, env: {} }))).toEqual([
      "E_KUBECONFIG",
      expect.stringContaining(broken),
    ]);
    const empty = join(dir, "empty");
    writeFileSync(empty, "apiVersion: v1\nkind: Config\n");
    expect(code(() => loadKubeConfig({ kubeconfig: empty, env: {} }))[0]).toBe("E_KUBECONFIG");
    expect(code(() => loadKubeConfig({ kubeconfig: api.kubeconfigPath, context: "other", env: {} }))).toEqual([
      "E_KUBECONFIG",
      expect.stringContaining('no context "other"'),
    ]);
    expect(loadKubeConfig({ kubeconfig: api.kubeconfigPath, context: "stand-in", env: {} }).getCurrentContext()).toBe(
      "stand-in",
    );
  });

  test("in a pod: the service account", () => {
    const env = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };
    expect(code(() => loadKubeConfig({ env, root: dir }))).toEqual([
      "E_KUBECONFIG",
      expect.stringContaining(join(dir + SERVICE_ACCOUNT_DIR, "token")),
    ]);
    mkdirSync(dir + SERVICE_ACCOUNT_DIR, { recursive: true });
    writeFileSync(join(dir + SERVICE_ACCOUNT_DIR, "token"), "t");
    const kc = loadKubeConfig({ env, root: dir });
    expect(kc.getCurrentCluster()?.server).toBe("https://10.96.0.1:443");
    expect(kc.getCurrentCluster()?.caFile).toBe(join(dir + SERVICE_ACCOUNT_DIR, "ca.crt"));
  });
});
