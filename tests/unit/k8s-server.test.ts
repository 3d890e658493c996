/**
 * The lab's API server (net/lab/api-server.ts) against the real
 * `@kubernetes/client-node` 2.x client: if the client accepts its answers, the
 * conventions our code relies on are the API's, not ours. Then its pure parts
 * (net/lab/api/): selectors, printers, defaults, validation, field validation, patches,
 * managedFields, discovery, OpenAPI, protobuf bodies, logs and exec framing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import { applyDefaults, pullPolicyOf } from "../../net/lab/api/defaults.ts";
import { aggregatedDiscovery, wantsAggregated } from "../../net/lab/api/discovery.ts";
import { ApiError } from "../../net/lab/api/errors.ts";
import { exitStatus, frame } from "../../net/lab/api/exec.ts";
import { pruneUnknown } from "../../net/lab/api/fields.ts";
import { selectLines } from "../../net/lab/api/logs.ts";
import { fieldsV1, leaves } from "../../net/lab/api/managed-fields.ts";
import { openApiDocument } from "../../net/lab/api/openapi.ts";
import { strategicMerge } from "../../net/lab/api/patch.ts";
import { formatLabelSelector, formatLabels, humanDuration, since } from "../../net/lab/api/print-format.ts";
import { nodeRoles, podState } from "../../net/lab/api/print-pods.ts";
import { decodeProtobuf } from "../../net/lab/api/protobuf.ts";
import { findDef } from "../../net/lab/api/resources.ts";
import { kindSchema } from "../../net/lab/api/schema.ts";
import { fieldMatcher, labelMatcher } from "../../net/lab/api/selectors.ts";
import { toTable } from "../../net/lab/api/table.ts";
import { validateCreate } from "../../net/lab/api/validation.ts";
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

// ---------------------------------------------------------------- the pure parts

describe("selectors", () => {
  const o = (labels: Record<string, string>, extra: Record<string, unknown> = {}) => ({
    metadata: { labels },
    ...extra,
  });
  test("label selectors: equality, set-based, existence, several terms", () => {
    const m = (sel: string, labels: Record<string, string>) => labelMatcher(sel)(o(labels));
    expect(m("app=web", { app: "web" })).toBe(true);
    expect(m("app==web", { app: "db" })).toBe(false);
    expect(m("app!=web", {})).toBe(true);
    expect(m("tier in (a, b)", { tier: "b" })).toBe(true);
    expect(m("tier in (a,b)", {})).toBe(false);
    expect(m("tier notin (a,b)", {})).toBe(true);
    expect(m("tier notin (a,b)", { tier: "a" })).toBe(false);
    expect(m("legacy", { legacy: "" })).toBe(true);
    expect(m("!legacy", { legacy: "" })).toBe(false);
    expect(m("app=web,tier in (a),!legacy", { app: "web", tier: "a" })).toBe(true);
    expect(() => labelMatcher("bad key!=x")).toThrow(ApiError);
  });

  test("field selectors: =, ==, != and several terms, as kubectl describe node sends them", () => {
    const pod = { metadata: { name: "p" }, spec: { nodeName: "n1" }, status: { phase: "Running" } };
    const sel = "spec.nodeName=n1,status.phase!=Failed,status.phase!=Succeeded";
    expect(fieldMatcher(sel)(pod)).toBe(true);
    expect(fieldMatcher(sel)({ ...pod, status: { phase: "Failed" } })).toBe(false);
    expect(fieldMatcher("involvedObject.uid==u1")({ involvedObject: { uid: "u1" } })).toBe(true);
    expect(() => fieldMatcher("nonsense")).toThrow(ApiError);
  });
});

describe("printers", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  test("ages as duration.HumanDuration writes them", () => {
    expect(
      [5, 119, 200, 600, 3600 * 5 + 60 * 3, 3600 * 30, 86400 * 3 + 3600 * 4, 86400 * 400].map((s) =>
        humanDuration(s * 1000),
      ),
    ).toEqual(["5s", "119s", "3m20s", "10m", "5h3m", "30h", "3d4h", "400d"]);
    expect(since(undefined)).toBe("<unknown>");
  });

  test("pod READY and STATUS from container statuses; Terminating when deleted", () => {
    const pod = (statuses: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({
      metadata: { name: "p", creationTimestamp: "2026-01-01T11:00:00Z", ...extra },
      spec: { containers: [{ name: "a" }, { name: "b" }] },
      status: { phase: "Running", containerStatuses: statuses },
    });
    const running = { ready: true, restartCount: 0, state: { running: {} } };
    expect(podState(pod([running, running]), now)).toEqual({ ready: "2/2", status: "Running", restarts: "0" });
    const crashing = {
      ready: false,
      restartCount: 4,
      state: { waiting: { reason: "CrashLoopBackOff" } },
      lastState: { terminated: { finishedAt: "2026-01-01T11:58:00Z" } },
    };
    expect(podState(pod([running, crashing]), now)).toEqual({
      ready: "1/2",
      status: "CrashLoopBackOff",
      restarts: "4 (2m ago)",
    });
    expect(podState(pod([running, running], { deletionTimestamp: "2026-01-01T12:00:30Z" }), now).status).toBe(
      "Terminating",
    );
    const waitingInit = {
      metadata: { name: "p" },
      spec: { initContainers: [{ name: "i" }], containers: [{ name: "a" }] },
      status: {
        phase: "Pending",
        initContainerStatuses: [{ name: "i", state: { waiting: { reason: "PodInitializing" } } }],
      },
    };
    expect(podState(waitingInit, now).status).toBe("Init:0/1");
  });

  test("node roles, label selectors and label maps as the printers write them", () => {
    expect(nodeRoles({ "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker", x: "y" })).toEqual([
      "control-plane",
      "worker",
    ]);
    expect(formatLabelSelector({})).toBe("<none>");
    const sel = {
      matchLabels: { b: "2" },
      matchExpressions: [
        { key: "a", operator: "In", values: ["y", "x"] },
        { key: "c", operator: "DoesNotExist" },
      ],
    };
    expect(formatLabelSelector(sel)).toBe("a in (x,y),b=2,!c");
    expect(formatLabels({ z: "1", a: "2" })).toBe("a=2,z=1");
    expect(formatLabels({})).toBe("<none>");
  });

  test("a Table: columns with priorities, rows with cells and PartialObjectMetadata", () => {
    const node = {
      metadata: {
        name: "n1",
        creationTimestamp: "2026-01-01T11:00:00Z",
        labels: { "node-role.kubernetes.io/worker": "" },
      },
      status: {
        conditions: [{ type: "Ready", status: "False" }],
        addresses: [{ type: "InternalIP", address: "198.18.0.11" }],
        nodeInfo: { kubeletVersion: "v1.32.0" },
      },
    };
    const table = toTable(findDef("v1", "Node"), [node], "7", "PartialObjectMetadata", now);
    expect(table.kind).toBe("Table");
    expect(
      table.columnDefinitions
        .filter((c: { priority: number }) => c.priority === 0)
        .map((c: { name: string }) => c.name),
    ).toEqual(["Name", "Status", "Roles", "Age", "Version"]);
    expect(table.rows[0].cells).toEqual([
      "n1",
      "NotReady",
      "worker",
      "60m",
      "v1.32.0",
      "198.18.0.11",
      "<none>",
      "<unknown>",
      "<unknown>",
      "<unknown>",
    ]);
    expect(table.rows[0].object).toEqual({
      kind: "PartialObjectMetadata",
      apiVersion: "meta.k8s.io/v1",
      metadata: node.metadata,
    });
  });
});

describe("what the API adds and refuses", () => {
  test("Pod defaults: spec, containers, admission, status", () => {
    const pod = applyDefaults(
      findDef("v1", "Pod"),
      {
        metadata: { name: "p" },
        spec: {
          containers: [
            { name: "c", image: "busybox", ports: [{ containerPort: 80 }] },
            { name: "d", image: "x:1.2" },
          ],
        },
      },
      true,
    );
    expect(pod.spec).toMatchObject({
      restartPolicy: "Always",
      dnsPolicy: "ClusterFirst",
      schedulerName: "default-scheduler",
      terminationGracePeriodSeconds: 30,
      serviceAccountName: "default",
      enableServiceLinks: true,
      securityContext: {},
    });
    expect(
      pod.spec.tolerations.map((t: { key: string; tolerationSeconds: number }) => `${t.key}:${t.tolerationSeconds}`),
    ).toEqual(["node.kubernetes.io/not-ready:300", "node.kubernetes.io/unreachable:300"]);
    expect(pod.spec.containers[0]).toMatchObject({
      imagePullPolicy: "Always",
      terminationMessagePath: "/dev/termination-log",
      terminationMessagePolicy: "File",
      ports: [{ containerPort: 80, protocol: "TCP" }],
    });
    expect(pod.spec.containers[1].imagePullPolicy).toBe("IfNotPresent");
    expect(pod.status).toEqual({ phase: "Pending", qosClass: "BestEffort" });
  });

  test("NetworkPolicy policyTypes, DaemonSet and Namespace defaults", () => {
    const np = (spec: Record<string, unknown>) =>
      applyDefaults(findDef("networking.k8s.io/v1", "NetworkPolicy"), { metadata: { name: "x" }, spec }, true);
    expect(np({ podSelector: {} }).spec.policyTypes).toEqual(["Ingress"]);
    expect(np({ egress: [{}] }).spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(np({ egress: [], policyTypes: ["Egress"] }).spec.policyTypes).toEqual(["Egress"]);
    const ds = applyDefaults(
      findDef("apps/v1", "DaemonSet"),
      { metadata: { name: "d" }, spec: { template: { spec: { containers: [] } } } },
      true,
    );
    expect(ds.spec.updateStrategy).toEqual({
      type: "RollingUpdate",
      rollingUpdate: { maxUnavailable: 1, maxSurge: 0 },
    });
    expect(ds.spec.revisionHistoryLimit).toBe(10);
    const ns = applyDefaults(findDef("v1", "Namespace"), { metadata: { name: "team" } }, true);
    expect(ns.metadata.labels).toEqual({ "kubernetes.io/metadata.name": "team" });
    expect(ns.spec).toEqual({ finalizers: ["kubernetes"] });
    expect(ns.status).toEqual({ phase: "Active" });
    expect(pullPolicyOf("reg:5000/img")).toBe("Always");
    expect(pullPolicyOf("img@sha256:abc")).toBe("IfNotPresent");
  });

  test("validation: the API's 422 message shape, every cause at once", () => {
    const refusal = (f: () => void) => {
      try {
        f();
      } catch (e) {
        return e as ApiError;
      }
      throw new Error("not refused");
    };
    const pod = refusal(() => validateCreate(findDef("v1", "Pod"), { metadata: { name: "x" }, spec: {} }));
    expect(pod.code).toBe(422);
    expect(pod.message).toBe('Pod "x" is invalid: spec.containers: Required value');
    expect(pod.details?.causes).toEqual([
      { reason: "FieldValueRequired", field: "spec.containers", message: "Required value" },
    ]);
    const name = refusal(() => validateCreate(findDef("v1", "Namespace"), { metadata: { name: "a.b" } }));
    expect(name.message).toContain('metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label');
    const np = refusal(() =>
      validateCreate(findDef("networking.k8s.io/v1", "NetworkPolicy"), {
        metadata: { name: "np" },
        spec: {
          podSelector: {},
          egress: [{ ports: [{ port: 443, endPort: 80 }], to: [{ ipBlock: { cidr: "10.0.0.0/33" } }, {}] }],
        },
      }),
    );
    expect(np.message).toBe(
      'NetworkPolicy "np" is invalid: [spec.egress[0].ports[0].endPort: Invalid value: 443: must be greater than or equal to `port`, spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64), spec.egress[0].to[1]: Required value: must specify a peer]',
    );
    expect(() =>
      validateCreate(findDef("networking.k8s.io/v1", "NetworkPolicy"), {
        metadata: { name: "ok" },
        spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }] }] },
      }),
    ).not.toThrow();
  });

  test("unknown fields are dropped, with their paths", () => {
    const pod: Record<string, unknown> = {
      metadata: { name: "p", bogus: 1 },
      spec: { foo: 1, containers: [{ name: "c", bar: 2 }] },
    };
    expect(pruneUnknown(pod, kindSchema("Pod"))).toEqual(["metadata.bogus", "spec.foo", "spec.containers[0].bar"]);
    expect(pod).toEqual({ metadata: { name: "p" }, spec: { containers: [{ name: "c" }] } });
  });

  test("strategic merge: merge keys from the schema, $patch, $setElementOrder, $retainKeys", () => {
    const ds = {
      spec: {
        template: {
          spec: {
            containers: [
              { name: "a", image: "1" },
              { name: "b", image: "1" },
            ],
          },
        },
      },
    };
    const patch = {
      spec: {
        template: {
          spec: {
            "$setElementOrder/containers": [{ name: "c" }, { name: "a" }],
            containers: [
              { name: "a", image: "2" },
              { name: "b", $patch: "delete" },
              { name: "c", image: "3" },
            ],
          },
        },
      },
    };
    const out = strategicMerge(ds, patch, kindSchema("DaemonSet")) as typeof ds;
    expect(out.spec.template.spec.containers).toEqual([
      { name: "c", image: "3" },
      { name: "a", image: "2" },
    ]);
    // tolerations have no merge key in the API: a list in a patch replaces the list
    const pod = { spec: { tolerations: [{ key: "a" }] } };
    expect(strategicMerge(pod, { spec: { tolerations: [{ key: "b" }] } }, kindSchema("Pod"))).toEqual({
      spec: { tolerations: [{ key: "b" }] },
    });
  });

  test("managedFields in the FieldsV1 form", () => {
    const o = {
      metadata: { name: "p", labels: { app: "x" } },
      spec: { containers: [{ name: "c", image: "i" }] },
    };
    expect(fieldsV1(leaves(o, kindSchema("Pod")).keys())).toEqual({
      "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
      "f:spec": { "f:containers": { 'k:{"name":"c"}': { ".": {}, "f:image": {}, "f:name": {} } } },
    });
  });
});

describe("what kubectl downloads", () => {
  test("aggregated discovery lists short names, categories, verbs and subresources", () => {
    const core = aggregatedDiscovery(true);
    const pods = core.items[0].versions[0].resources.find((r: { resource: string }) => r.resource === "pods");
    expect(pods).toMatchObject({
      shortNames: ["po"],
      categories: ["all"],
      scope: "Namespaced",
      singularResource: "pod",
    });
    expect(pods.subresources.map((s: { subresource: string }) => s.subresource)).toEqual(["status", "log", "exec"]);
    const named = aggregatedDiscovery(false);
    expect(named.items.map((g: { metadata: { name: string } }) => g.metadata.name)).toContain("networking.k8s.io");
    expect(
      wantsAggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"),
    ).toBe(true);
    expect(wantsAggregated("application/json, */*")).toBe(false);
  });

  test("OpenAPI v3: the PATCH operation carries fieldValidation and the kind; list fields their merge keys", () => {
    const doc = openApiDocument("apis/apps/v1")!;
    const patch = doc.paths["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"].patch;
    expect(patch["x-kubernetes-group-version-kind"]).toEqual({ group: "apps", version: "v1", kind: "DaemonSet" });
    expect(patch.parameters.map((p: { name: string }) => p.name)).toContain("fieldValidation");
    expect(Object.keys(patch.requestBody.content)).toContain("application/strategic-merge-patch+json");
    const podSpec = doc.components.schemas["io.k8s.api.core.v1.PodSpec"];
    expect(podSpec.properties.containers["x-kubernetes-patch-merge-key"]).toBe("name");
    expect(doc.components.schemas["io.k8s.api.apps.v1.DaemonSet"]["x-kubernetes-group-version-kind"]).toEqual([
      { group: "apps", kind: "DaemonSet", version: "v1" },
    ]);
    expect(openApiDocument("apis/nowhere/v1")).toBeUndefined();
  });

  test("a protobuf body (what kubectl create namespace sends) decodes to its JSON", () => {
    const enc = new TextEncoder();
    const field = (n: number, bytes: Uint8Array) => new Uint8Array([(n << 3) | 2, bytes.length, ...bytes]);
    const str = (n: number, s: string) => field(n, enc.encode(s));
    const cat = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((p) => [...p]));
    const labels = field(11, cat(str(1, "team"), str(2, "a")));
    const namespace = cat(field(1, cat(str(1, "scratch"), str(2, ""), labels)), field(2, new Uint8Array()));
    const body = cat(enc.encode("k8s\0"), field(1, cat(str(1, "v1"), str(2, "Namespace"))), field(2, namespace));
    expect(decodeProtobuf(body)).toEqual({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "scratch", labels: { team: "a" } },
    });
    expect(() => decodeProtobuf(enc.encode("{}"))).toThrow(ApiError);
  });
});

describe("logs and exec helpers", () => {
  test("log lines: CRI lines give their text (and time), tailLines and sinceSeconds select", () => {
    const text = "plain\n2026-01-01T11:59:50Z stdout F recent\n2026-01-01T11:00:00Z stderr F old\n";
    const opts = { follow: false, previous: false, timestamps: false };
    const now = Date.parse("2026-01-01T12:00:00Z");
    expect(selectLines(text, opts, now)).toEqual(["plain", "recent", "old"]);
    expect(selectLines(text, { ...opts, tailLines: 1 }, now)).toEqual(["old"]);
    expect(selectLines(text, { ...opts, sinceSeconds: 60 }, now)).toEqual(["plain", "recent"]);
    expect(selectLines(text, { ...opts, timestamps: true, tailLines: 2 }, now)).toEqual([
      "2026-01-01T11:59:50Z recent",
      "2026-01-01T11:00:00Z old",
    ]);
  });

  test("the exec exit status is the one kubectl turns into its exit code", () => {
    expect(exitStatus(0).status).toBe("Success");
    expect(exitStatus(3)).toMatchObject({
      status: "Failure",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    });
    expect([...frame(1, "hi")]).toEqual([1, 104, 105]);
  });
});

describe("what the server adds by itself, through the client", () => {
  test("a new namespace gets its default ServiceAccount; Services get a clusterIP from 10.96.0.0/12", async () => {
    await core.createNamespace({ body: { metadata: { name: "team-a" } } });
    expect((await core.readNamespacedServiceAccount({ namespace: "team-a", name: "default" })).metadata?.name).toBe(
      "default",
    );
    const svc = await core.createNamespacedService({
      namespace: "team-a",
      body: { metadata: { name: "web" }, spec: { ports: [{ port: 80 }] } },
    });
    expect(svc.spec?.clusterIP).toMatch(/^10\.(9[6-9]|10\d|11[01])\./);
    expect(svc.spec?.ports?.[0]).toMatchObject({ port: 80, protocol: "TCP", targetPort: 80 });
    const taken = { metadata: { name: "web2" }, spec: { clusterIP: svc.spec?.clusterIP, ports: [{ port: 80 }] } };
    expect((await codeOf(core.createNamespacedService({ namespace: "team-a", body: taken }))).code).toBe(422);
    const named = await core.createNamespacedConfigMap({
      namespace: "team-a",
      body: { metadata: { generateName: "cm-" } },
    });
    expect(named.metadata?.name).toMatch(/^cm-[a-z0-9]{5}$/);
    expect(named.metadata?.managedFields?.[0]).toMatchObject({ operation: "Update", fieldsType: "FieldsV1" });
  });

  test("fieldValidation: Warn drops unknown fields with a Warning header; Strict refuses; dryRun stores nothing", async () => {
    const post = (query: string, body: unknown) =>
      fetch(`${api.url}/api/v1/namespaces/default/configmaps${query}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const warned = await post("", { metadata: { name: "w" }, data: { a: "1" }, extra: true });
    expect(warned.status).toBe(201);
    expect(warned.headers.get("warning")).toBe('299 - "unknown field \\"extra\\""');
    expect((await warned.json()).extra).toBeUndefined();
    const strict = await post("?fieldValidation=Strict", { metadata: { name: "s" }, extra: true });
    expect(strict.status).toBe(400);
    expect((await strict.json()).message).toBe(
      'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "extra"',
    );
    expect((await post("?dryRun=All", { metadata: { name: "dry" } })).status).toBe(201);
    expect(api.store.get("v1", "ConfigMap", "dry", "default")).toBeUndefined();
  });
});

describe("graceful deletion and the kubelet hooks", () => {
  let lab: ApiServer;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weave-k8s-logs-"));
    writeFileSync(join(dir, "c.log"), "one\ntwo\nthree\n");
    lab = await startApiServer({
      gracefulPodDeletion: true,
      pods: {
        logs: (_pod, container) => (container === "c" ? join(dir, "c.log") : undefined),
        exec: (_pod, _c, r) => ({ argv: r.command }),
      },
    });
    lab.store.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p", namespace: "default" },
      spec: {
        nodeName: "n1",
        containers: [
          { name: "c", image: "x" },
          { name: "d", image: "y" },
        ],
      },
    });
  });
  afterAll(async () => {
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("logs: the named container's file, tailLines; the API's 400s", async () => {
    const get = (q: string) => fetch(`${lab.url}/api/v1/namespaces/default/pods/p/log${q}`);
    expect(await (await get("?container=c&tailLines=2")).text()).toBe("two\nthree\n");
    const noContainer = await get("");
    expect(noContainer.status).toBe(400);
    expect((await noContainer.json()).message).toBe(
      "a container name must be specified for pod p, choose one of: [c d]",
    );
    expect((await (await get("?container=d")).json()).message).toBe(
      'container "d" in pod "p" is waiting to start: ContainerCreating',
    );
    expect((await (await get("?container=e")).json()).message).toBe("container e is not valid for pod p");
  });

  test("DELETE of a bound Pod marks it (MODIFIED); gracePeriodSeconds=0 removes it", async () => {
    const seen: string[] = [];
    const stop = lab.store.subscribe(
      { def: findDef("v1", "Pod"), match: () => true, send: (e) => seen.push(e.type) },
      lab.store.resourceVersion,
    );
    const podUrl = `${lab.url}/api/v1/namespaces/default/pods/p`;
    const marked = await (await fetch(podUrl, { method: "DELETE" })).json();
    expect(marked.metadata.deletionTimestamp).toBeString();
    expect(marked.metadata.deletionGracePeriodSeconds).toBe(30);
    expect(lab.store.get("v1", "Pod", "p", "default")).toBeDefined();
    await fetch(`${podUrl}?gracePeriodSeconds=0`, { method: "DELETE" });
    expect(lab.store.get("v1", "Pod", "p", "default")).toBeUndefined();
    expect(seen).toEqual(["MODIFIED", "DELETED"]);
    if (stop !== "expired") stop();
  });
});

describe("listeners", () => {
  test("listen() opens another listener on the same store; its stop() closes it; handlers serve a Bun.serve of one's own", async () => {
    const extra = api.listen("127.0.0.1");
    expect(extra.port).not.toBe(api.port);
    const version = await (await fetch(`http://127.0.0.1:${extra.port}/version`)).json();
    expect(version.minor).toBe("32");
    const ns = await (await fetch(`http://127.0.0.1:${extra.port}/api/v1/namespaces/default`)).json();
    expect(ns.metadata.name).toBe("default");
    extra.stop();
    await expect(fetch(`http://127.0.0.1:${extra.port}/version`)).rejects.toThrow();
    const own = Bun.serve({ hostname: "127.0.0.1", port: 0, ...api.handlers } as Parameters<typeof Bun.serve>[0]);
    try {
      expect((await fetch(`http://127.0.0.1:${own.port}/api/v1/namespaces/kube-system`)).status).toBe(200);
    } finally {
      own.stop(true);
    }
  });
});
