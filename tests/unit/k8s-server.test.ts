/**
 * The stand-in API server (net/lab/api-server.ts) against the real
 * `@kubernetes/client-node` 2.x client: if the client accepts its answers, the
 * conventions our code relies on are the API's, not ours.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Node,
} from "@kubernetes/client-node";
import { startApiServer, type ApiServer, type WatchEvent } from "../../net/lab/api-server.ts";
import { until as waitUntil } from "../support/wait.ts";

let api: ApiServer;
let core: CoreV1Api;

beforeAll(async () => {
  api = await startApiServer();
  core = api.kubeConfig.makeApiClient(CoreV1Api);
});
afterAll(async () => {
  await api.stop();
});

/** The HTTP code of a failed client call (the 2.x client throws ApiException). */
async function codeOf(p: Promise<unknown>): Promise<{ code: number; reason?: string }> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    const body = typeof e.body === "string" ? JSON.parse(e.body) : e.body;
    return { code: e.code, reason: body?.reason };
  }
  throw new Error("the call succeeded");
}

/** This file's waits: 3000 ms at most, polling every 10 ms. */
const until = <T>(f: () => T | undefined | false, ms = 3000) => waitUntil(f, ms, 10, "timed out waiting");

const node = (name: string, ip: string): V1Node => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name, labels: { role: "worker" } },
  status: { addresses: [{ type: "InternalIP", address: ip }], conditions: [{ type: "Ready", status: "True" }] },
});

describe("k8s stand-in with the real client", () => {
  test("nodes: create, read, list, status patch, delete", async () => {
    const made = await core.createNode({ body: node("n1", "198.18.0.1") });
    expect(made.metadata?.uid).toBeString();
    expect(made.metadata?.creationTimestamp).toBeInstanceOf(Date);
    const rv1 = Number(made.metadata?.resourceVersion);
    expect(rv1).toBeGreaterThan(0);

    expect(await codeOf(core.createNode({ body: node("n1", "198.18.0.1") }))).toEqual({
      code: 409,
      reason: "AlreadyExists",
    });
    expect((await core.readNode({ name: "n1" })).status?.addresses?.[0]?.address).toBe("198.18.0.1");
    expect(await codeOf(core.readNode({ name: "nope" }))).toEqual({ code: 404, reason: "NotFound" });

    const list = await core.listNode();
    expect(list.kind).toBe("NodeList");
    expect(list.items.map((n) => n.metadata?.name)).toEqual(["n1"]);
    expect(Number(list.metadata?.resourceVersion)).toBeGreaterThanOrEqual(rv1);

    // The generated client sends json-patch by default; a merge patch needs the header set.
    const unavailable = {
      status: { conditions: [{ type: "NetworkUnavailable", status: "False", reason: "WeaveIsUp" }] },
    };
    const patched = await core.patchNodeStatus(
      { name: "n1", body: unavailable },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    );
    // strategic merge keeps the other conditions (merge key "type")
    expect(patched.status?.conditions?.map((c) => c.type).sort()).toEqual(["NetworkUnavailable", "Ready"]);
    expect(Number(patched.metadata?.resourceVersion)).toBeGreaterThan(rv1);
    expect(api.requests.at(-1)).toMatchObject({
      method: "PATCH",
      path: "/api/v1/nodes/n1/status",
      contentType: "application/strategic-merge-patch+json",
    });

    // json-patch (the client's default content type)
    const jp = await core.patchNode({ name: "n1", body: [{ op: "add", path: "/metadata/labels/zone", value: "a" }] });
    expect(jp.metadata?.labels).toEqual({ role: "worker", zone: "a" });
    // the main resource ignores status changes
    const ignored = await core.patchNode(
      { name: "n1", body: { status: { addresses: [] } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    expect(ignored.status?.addresses).toHaveLength(1);

    // the server answers with the deleted Node; the generated client types it V1Status
    const gone = await core.deleteNode({ name: "n1" });
    expect(gone.kind).toBe("Node");
    expect(await codeOf(core.readNode({ name: "n1" }))).toEqual({ code: 404, reason: "NotFound" });
  });

  test("configmaps: replace with a stale resourceVersion is 409 Conflict", async () => {
    const cm: V1ConfigMap = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "weave-net", namespace: "kube-system" },
      data: { a: "1" },
    };
    const v1 = await core.createNamespacedConfigMap({ namespace: "kube-system", body: cm });
    const v2 = await core.replaceNamespacedConfigMap({
      namespace: "kube-system",
      name: "weave-net",
      body: { ...v1, data: { a: "2" } },
    });
    expect(v2.data).toEqual({ a: "2" });
    expect(
      await codeOf(
        core.replaceNamespacedConfigMap({
          namespace: "kube-system",
          name: "weave-net",
          body: { ...v1, data: { a: "3" } },
        }),
      ),
    ).toEqual({ code: 409, reason: "Conflict" });
    // the same holds for a merge patch carrying a resourceVersion (compare-and-swap)
    const stale = { metadata: { resourceVersion: v1.metadata?.resourceVersion }, data: { a: "4" } };
    expect(
      await codeOf(
        core.patchNamespacedConfigMap(
          { namespace: "kube-system", name: "weave-net", body: stale },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        ),
      ),
    ).toMatchObject({ code: 409 });
    // a json-patch test op is the other way to compare-and-swap
    const cas = [
      { op: "test", path: "/metadata/resourceVersion", value: v1.metadata?.resourceVersion },
      { op: "replace", path: "/data/a", value: "5" },
    ];
    expect(
      (await codeOf(core.patchNamespacedConfigMap({ namespace: "kube-system", name: "weave-net", body: cas }))).code,
    ).toBe(422);
    expect((await core.readNamespacedConfigMap({ namespace: "kube-system", name: "weave-net" })).data).toEqual({
      a: "2",
    });
    // a namespace that does not exist
    expect(
      await codeOf(core.createNamespacedConfigMap({ namespace: "nowhere", body: { ...cm, metadata: { name: "x" } } })),
    ).toEqual({ code: 404, reason: "NotFound" });
  });

  test("server-side apply through KubernetesObjectApi.patch", async () => {
    const objects = KubernetesObjectApi.makeApiClient(api.kubeConfig);
    const ds = {
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "weave-net", namespace: "kube-system", labels: { app: "weave-net" } },
      spec: {
        selector: { matchLabels: { name: "weave-net" } },
        template: {
          metadata: { labels: { name: "weave-net" } },
          spec: {
            containers: [
              {
                name: "weave",
                image: "weave:1",
                env: [
                  { name: "A", value: "1" },
                  { name: "B", value: "2" },
                ],
              },
            ],
          },
        },
      },
    };
    const apply = (o: KubernetesObject) =>
      objects.patch(o, undefined, undefined, "weave-install", true, PatchStrategy.ServerSideApply);
    const made = await apply(structuredClone(ds));
    expect(made.metadata?.uid).toBeString();
    expect(api.requests.at(-1)).toMatchObject({
      method: "PATCH",
      path: "/apis/apps/v1/namespaces/kube-system/daemonsets/weave-net",
      contentType: "application/apply-patch+yaml",
    });
    expect(api.requests.at(-1)?.query).toContain("fieldManager=weave-install");
    expect(api.requests.at(-1)?.query).toContain("force=true");
    // KubernetesObjectApi asks discovery which resource a kind is
    expect(api.requests.some((r) => r.path === "/apis/apps/v1")).toBe(true);

    // re-apply: changed image, env B dropped -> gone (this manager applied it before)
    const next = structuredClone(ds);
    next.spec.template.spec.containers[0]!.image = "weave:2";
    next.spec.template.spec.containers[0]!.env = [{ name: "A", value: "1" }];
    await apply(next);
    const read = await api.kubeConfig
      .makeApiClient(AppsV1Api)
      .readNamespacedDaemonSet({ namespace: "kube-system", name: "weave-net" });
    expect(read.spec?.template.spec?.containers[0]?.image).toBe("weave:2");
    expect(read.spec?.template.spec?.containers[0]?.env).toEqual([{ name: "A", value: "1" }]);
    expect(read.metadata?.generation).toBe(2);
    // applying the same thing again changes nothing
    const rv = read.metadata?.resourceVersion;
    expect((await apply(next)).metadata?.resourceVersion).toBe(rv);

    // apply without a field manager is refused, like the real server
    expect(
      (
        await codeOf(
          objects.patch(structuredClone(ds), undefined, undefined, undefined, undefined, PatchStrategy.ServerSideApply),
        )
      ).code,
    ).toBe(422);
    // cluster-scoped kinds of other groups
    const role = await apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "weave-net" },
    } as KubernetesObject);
    expect(role.metadata?.namespace).toBeUndefined();
  });

  test("list selectors", async () => {
    api.store.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p1", namespace: "default", labels: { app: "a" } },
      spec: { nodeName: "n1" },
    });
    api.store.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p2", namespace: "default", labels: { app: "b" } },
      spec: { nodeName: "n2" },
    });
    const names = async (o: { labelSelector?: string; fieldSelector?: string }) =>
      (await core.listPodForAllNamespaces(o)).items.map((p) => p.metadata?.name);
    expect(await names({})).toEqual(["p1", "p2"]);
    expect(await names({ labelSelector: "app=a" })).toEqual(["p1"]);
    expect(await names({ labelSelector: "app in (a,b),app!=b" })).toEqual(["p1"]);
    expect(await names({ fieldSelector: "spec.nodeName=n2" })).toEqual(["p2"]);
    expect(await names({ fieldSelector: "metadata.name=p1" })).toEqual(["p1"]);
  });

  test("a watch of nodes sees ADDED, MODIFIED, DELETED after the list's resourceVersion", async () => {
    api.store.put(node("before", "198.18.0.9"));
    const list = await core.listNode();
    const events: WatchEvent[] = [];
    let ended: unknown = "open";
    const controller = await new Watch(api.kubeConfig).watch(
      "/api/v1/nodes",
      { resourceVersion: list.metadata?.resourceVersion },
      (type, object) => events.push({ type, object } as WatchEvent),
      (err) => (ended = err),
    );
    await core.createNode({ body: node("w1", "198.18.0.2") });
    await core.patchNode(
      { name: "w1", body: { metadata: { labels: { x: "y" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    api.store.delete("v1", "Node", "w1");
    await until(() => events.length >= 3);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(["ADDED w1", "MODIFIED w1", "DELETED w1"]);
    expect(events[1]!.object.metadata.labels).toEqual({ role: "worker", x: "y" });
    controller.abort();
    await until(() => ended !== "open");
  });

  test("a watch without a resourceVersion starts with the current objects; an expired one gets 410", async () => {
    const seen: string[] = [];
    const c1 = await new Watch(api.kubeConfig).watch(
      "/api/v1/nodes",
      {},
      (type, o) => seen.push(`${type} ${o.metadata.name}`),
      () => {},
    );
    await until(() => seen.length >= 1);
    expect(seen).toContain("ADDED before");
    c1.abort();

    const old = api.store.resourceVersion;
    api.store.put(node("after", "198.18.0.10"));
    api.store.compact();
    const errs: unknown[] = [];
    await new Watch(api.kubeConfig).watch(
      "/api/v1/nodes",
      { resourceVersion: old },
      (type, o) => errs.push([type, o.code, o.reason]),
      () => {},
    );
    await until(() => errs.length >= 1);
    expect(errs[0]).toEqual(["ERROR", 410, "Expired"]);
  });

  test("down() refuses and ends watches; up() answers again on the same port", async () => {
    let ended = false;
    await new Watch(api.kubeConfig).watch(
      "/api/v1/nodes",
      { resourceVersion: api.store.resourceVersion },
      () => {},
      () => (ended = true),
    );
    await api.down();
    expect(api.isUp).toBe(false);
    await until(() => ended || undefined);
    await expect(core.listNode()).rejects.toThrow();
    api.store.put(node("while-down", "198.18.0.11"));
    await api.up();
    expect((await core.listNode()).items.map((n) => n.metadata?.name)).toContain("while-down");
    expect(new URL(api.url).port).toBe(String(api.port));
  });

  test("deleting a namespace deletes what is in it", async () => {
    await core.createNamespace({ body: { metadata: { name: "scratch" } } });
    await core.createNamespacedConfigMap({ namespace: "scratch", body: { metadata: { name: "a" } } });
    expect((await core.readNamespace({ name: "scratch" })).status?.phase).toBe("Active");
    await core.deleteNamespace({ name: "scratch" });
    expect(api.store.list("v1", "ConfigMap", "scratch")).toEqual([]);
    expect(await codeOf(core.readNamespace({ name: "scratch" }))).toEqual({ code: 404, reason: "NotFound" });
  });

  test("discovery and version", async () => {
    const get = async (p: string) => (await fetch(api.url + p)).json() as Promise<Record<string, unknown>>;
    expect((await get("/version")).major).toBe("1");
    expect((await get("/api")).kind).toBe("APIVersions");
    expect(((await get("/apis")).groups as { name: string }[]).map((g) => g.name)).toContain("networking.k8s.io");
    const core = (await get("/api/v1")).resources as { name: string; namespaced: boolean }[];
    expect(core.find((r) => r.name === "nodes")?.namespaced).toBe(false);
    expect(core.some((r) => r.name === "nodes/status")).toBe(true);
    expect((await fetch(`${api.url}/api/v1/nowhere`)).status).toBe(404);
  });
});
