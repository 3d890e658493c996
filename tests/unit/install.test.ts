/**
 * `weave install`, `weave uninstall` and setup-cni's Node event against the API-server
 * stand-in (net/lab/api-server.ts) with the real client. The stand-in runs no
 * controllers: the test plays the DaemonSet controller and kubelet, making agent pods
 * Ready and updating the DaemonSet's status while install waits.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { run as install } from "../../commands/install.ts";
import { run as setupCni, findConflicts } from "../../commands/setup-cni.ts";
import { run as uninstall } from "../../commands/uninstall.ts";
import { WeaveError } from "../../net/errors.ts";
import { podState } from "../../net/cluster-facts.ts";
import { progressLine } from "../../net/k8s/install.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";
import { until as waitUntil } from "../support/wait.ts";

const servers: ApiServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A stand-in with nodes (name -> InternalIP) and the `kubernetes` Service at `clusterIp`. */
async function cluster(
  nodes: Record<string, string> = { n1: "198.18.0.1", n2: "198.18.0.2", n3: "198.18.0.3" },
  clusterIp: string | null = "10.96.0.1",
) {
  const api = await startApiServer();
  servers.push(api);
  for (const [name, ip] of Object.entries(nodes))
    api.store.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name },
      status: {
        addresses: [
          { type: "InternalIP", address: ip },
          { type: "Hostname", address: name },
        ],
      },
    });
  if (clusterIp)
    api.store.put({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kubernetes", namespace: "default" },
      spec: { clusterIP: clusterIp, ports: [{ port: 443 }] },
    });
  return api;
}

function io(extra: { pollMs?: number } = {}) {
  const r = { out: "", logs: [] as string[] };
  return {
    r,
    io: {
      env: {},
      out: (t: string) => {
        r.out += t;
      },
      log: (l: string) => {
        r.logs.push(l);
      },
      ...extra,
    },
  };
}

/** This file's waits: 5000 ms at most, polling every 5 ms. */
const until = <T>(f: () => T | undefined | false, ms = 5000) => waitUntil(f, ms, 5);

const agentPod = (node: string, ready: boolean): V1Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: `weave-net-${node}`, namespace: "kube-system", labels: { name: "weave-net" } },
  spec: { nodeName: node, containers: [{ name: "weave", image: "weave:0.1.0" }] },
  status: ready
    ? {
        phase: "Running",
        conditions: [{ type: "Ready", status: "True" }],
        containerStatuses: [
          { name: "weave", ready: true, restartCount: 0, image: "", imageID: "", state: { running: {} } },
        ],
      }
    : {
        phase: "Pending",
        conditions: [{ type: "Ready", status: "False" }],
        initContainerStatuses: [
          {
            name: "weave-init",
            ready: false,
            restartCount: 0,
            image: "",
            imageID: "",
            state: { waiting: { reason: "PodInitializing" } },
          },
        ],
      },
});

/** Plays the DaemonSet controller: once the DaemonSet exists, makes one more node's agent Ready every `stepMs`. */
async function controller(api: ApiServer, nodes: string[], stepMs: number) {
  const ds = await until(() => api.store.get("apps/v1", "DaemonSet", "weave-net", "kube-system"));
  for (let ready = 0; ready <= nodes.length; ready++) {
    for (const [i, n] of nodes.entries()) api.store.put(agentPod(n, i < ready));
    const n = nodes.length;
    api.store.put({
      ...api.store.get("apps/v1", "DaemonSet", "weave-net", "kube-system")!,
      status: {
        observedGeneration: ds.metadata.generation,
        desiredNumberScheduled: n,
        currentNumberScheduled: n,
        updatedNumberScheduled: n,
        numberMisscheduled: 0,
        numberReady: ready,
        numberAvailable: ready,
      },
    });
    await Bun.sleep(stepMs);
  }
}

const OURS = [
  ["v1", "ServiceAccount", "kube-system"],
  ["rbac.authorization.k8s.io/v1", "ClusterRole", undefined],
  ["rbac.authorization.k8s.io/v1", "ClusterRoleBinding", undefined],
  ["rbac.authorization.k8s.io/v1", "Role", "kube-system"],
  ["rbac.authorization.k8s.io/v1", "RoleBinding", "kube-system"],
  ["v1", "ConfigMap", "kube-system"],
  ["apps/v1", "DaemonSet", "kube-system"],
] as const;
const present = (api: ApiServer) => OURS.filter(([v, k, ns]) => api.store.get(v, k, "weave-net", ns)).map(([, k]) => k);
const patches = (api: ApiServer) => api.requests.filter((r) => r.method === "PATCH");
const writes = (api: ApiServer) => api.requests.filter((r) => r.method !== "GET");

async function refusal(p: Promise<unknown>): Promise<WeaveError> {
  const e = await p.then(
    () => undefined,
    (e) => e,
  );
  if (!(e instanceof WeaveError)) throw new Error(`expected a WeaveError, got ${e}`);
  return e;
}

describe("weave install against the stand-in", () => {
  test("applies every object by server-side apply (field manager weave), waits with progress, summarises", async () => {
    const api = await cluster();
    const { r, io: inout } = io({ pollMs: 20 });
    const ctl = controller(api, ["n1", "n2", "n3"], 150);
    expect(await install({ kubeconfig: api.kubeconfigPath, timeout: 20 }, inout)).toBe(0);
    await ctl;
    expect(present(api)).toEqual(OURS.map(([, k]) => k));
    expect(patches(api).map((p) => p.path)).toEqual([
      "/api/v1/namespaces/kube-system/serviceaccounts/weave-net",
      "/apis/rbac.authorization.k8s.io/v1/clusterroles/weave-net",
      "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/weave-net",
      "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/roles/weave-net",
      "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/weave-net",
      "/api/v1/namespaces/kube-system/configmaps/weave-net",
      "/apis/apps/v1/namespaces/kube-system/daemonsets/weave-net",
    ]);
    for (const p of patches(api)) {
      expect(p.contentType).toBe("application/apply-patch+yaml");
      expect(new URLSearchParams(p.query).get("fieldManager")).toBe("weave");
      expect(new URLSearchParams(p.query).get("force")).toBe("true");
    }
    const progress = r.logs.filter((l) => /agents ready/.test(l));
    expect(progress[0]).toMatch(/^0\/3 agents ready; waiting for n1 \(/);
    expect(
      progress.some((l) => l.startsWith("1/3 agents ready; waiting for n2 (pod weave-net-n2: Pending), n3 (")),
    ).toBe(true);
    expect(progress.some((l) => l.startsWith("2/3 agents ready; waiting for n3 (pod weave-net-n3: Pending)"))).toBe(
      true,
    );
    expect(progress.at(-1)).toBe("3/3 agents ready");
    expect(r.logs).toContain(
      "checked --ipalloc-range 10.32.0.0/12 against 3 node address(es) and the service range 10.96.0.0/12 (inferred from ClusterIP 10.96.0.1; --service-cidr overrides)",
    );
    expect(r.out).toMatch(/^weave 0\.1\.0 installed in kube-system: 3\/3 agents ready \(\d+\.\d s\)/);
  });

  test("install again applies the same objects and changes nothing", async () => {
    const api = await cluster();
    await install({ kubeconfig: api.kubeconfigPath, timeout: 0 }, io().io);
    const rvs = OURS.map(([v, k, ns]) => api.store.get(v, k, "weave-net", ns)!.metadata.resourceVersion);
    await install({ kubeconfig: api.kubeconfigPath, timeout: 0 }, io().io);
    expect(OURS.map(([v, k, ns]) => api.store.get(v, k, "weave-net", ns)!.metadata.resourceVersion)).toEqual(rvs);
  });

  test("gives up after --timeout, saying which nodes wait and where to look", async () => {
    const api = await cluster();
    const { io: inout } = io({ pollMs: 20 });
    const e = await refusal(install({ kubeconfig: api.kubeconfigPath, timeout: 0.3 }, inout));
    expect(e.code).toBe("E_TIMEOUT");
    expect(e.message).toContain(
      "0/3 agents ready; waiting for n1 (no agent pod yet), n2 (no agent pod yet), n3 (no agent pod yet)",
    );
    expect(e.message).toContain("kubectl describe node n1");
  });

  test("what a pod that is not ready is doing", () => {
    const crash = agentPod("n1", false);
    crash.status!.initContainerStatuses![0]!.state = {
      waiting: { reason: "CrashLoopBackOff", message: "back-off 10s restarting failed container" },
    };
    expect(podState(crash)).toBe(
      "pod weave-net-n1: init container weave-init CrashLoopBackOff (back-off 10s restarting failed container)",
    );
    crash.status!.initContainerStatuses![0]!.state = { waiting: { reason: "CrashLoopBackOff" } };
    crash.status!.initContainerStatuses![0]!.lastState = {
      terminated: { exitCode: 1, reason: "Error", message: "weave: another network's CNI config is on this node" },
    };
    expect(podState(crash)).toBe(
      "pod weave-net-n1: init container weave-init CrashLoopBackOff (last run: Error, exit 1, weave: another network's CNI config is on this node)",
    );
    const notReady = agentPod("n2", true);
    notReady.status!.containerStatuses![0]!.ready = false;
    expect(podState(notReady)).toBe(
      "pod weave-net-n2: agent running, not ready yet (GET /status answers 503 until it is)",
    );
    expect(
      progressLine({
        nodes: 5,
        ready: 0,
        rolledOut: false,
        waiting: ["a", "b", "c", "d", "e"].map((node) => ({ node, state: "x" })),
      }),
    ).toBe("0/5 agents ready; waiting for a (x), b (x), c (x) and 2 more");
  });

  test("refuses a range holding a node's address, naming both, before applying anything", async () => {
    const api = await cluster({ n1: "198.18.0.1", n2: "10.32.7.9" });
    const e = await refusal(install({ kubeconfig: api.kubeconfigPath }, io().io));
    expect(e.code).toBe("E_RANGE_OVERLAP");
    expect(e.message).toStartWith(
      "--ipalloc-range 10.32.0.0/12 overlaps node n2: its InternalIP 10.32.7.9 is inside it",
    );
    expect(writes(api)).toEqual([]);
    // another range is fine
    expect(await install({ kubeconfig: api.kubeconfigPath, ipallocRange: "10.40.0.0/16", timeout: 0 }, io().io)).toBe(
      0,
    );
  });

  test("refuses a range overlapping the given service range (--service-cidr)", async () => {
    const api = await cluster();
    const e = await refusal(
      install({ kubeconfig: api.kubeconfigPath, ipallocRange: "10.96.128.0/17", serviceCidr: "10.96.0.0/12" }, io().io),
    );
    expect(e.code).toBe("E_RANGE_OVERLAP");
    expect(e.message).toStartWith(
      "--ipalloc-range 10.96.128.0/17 overlaps the service range 10.96.0.0/12 (--service-cidr)",
    );
    expect(writes(api)).toEqual([]);
    const bad = await refusal(install({ kubeconfig: api.kubeconfigPath, serviceCidr: "10.96.0/12" }, io().io));
    expect(bad.code).toBe("E_BAD_FLAG");
    expect(bad.message).toContain('--service-cidr "10.96.0/12"');
  });

  test("a dual-stack --service-cidr is checked range by range", async () => {
    const api = await cluster();
    const dual = "fd00:10:96::/112,10.96.0.0/12";
    const e = await refusal(
      install({ kubeconfig: api.kubeconfigPath, ipallocRange: "10.96.128.0/17", serviceCidr: dual }, io().io),
    );
    expect(e.code).toBe("E_RANGE_OVERLAP");
    expect(e.message).toStartWith(`--ipalloc-range 10.96.128.0/17 overlaps the service range ${dual} (--service-cidr)`);
    const { r, io: inout } = io();
    expect(await install({ kubeconfig: api.kubeconfigPath, serviceCidr: dual, timeout: 0 }, inout)).toBe(0);
    expect(r.logs[1]).toEndWith(`and the service range ${dual} (--service-cidr)`);
    const bad = await refusal(
      install({ kubeconfig: api.kubeconfigPath, serviceCidr: "10.96.0.0/12,fd00::1/129" }, io().io),
    );
    expect(bad.code).toBe("E_BAD_FLAG");
    expect(bad.message).toBe('--service-cidr "fd00::1/129" has a prefix length over 128');
  });

  test("infers the service range from the kubernetes Service, says so, and --service-cidr overrides", async () => {
    // EKS: ClusterIP 10.100.0.1 of 10.100.0.0/16; inferred: its /12, 10.96.0.0/12
    const api = await cluster(undefined, "10.100.0.1");
    const e = await refusal(install({ kubeconfig: api.kubeconfigPath, ipallocRange: "10.104.0.0/16" }, io().io));
    expect(e.code).toBe("E_RANGE_OVERLAP");
    expect(e.message).toStartWith(
      "--ipalloc-range 10.104.0.0/16 may overlap the service range 10.96.0.0/12: that range is inferred, not read from the cluster (the /12 around 10.100.0.1",
    );
    expect(e.message).toContain("pass it with --service-cidr");
    expect(writes(api)).toEqual([]);
    // told the real (smaller) service range, the same pod range passes
    const { r, io: inout } = io();
    expect(
      await install(
        { kubeconfig: api.kubeconfigPath, ipallocRange: "10.104.0.0/16", serviceCidr: "10.100.0.0/16", timeout: 0 },
        inout,
      ),
    ).toBe(0);
    expect(r.logs[1]).toBe(
      "checked --ipalloc-range 10.104.0.0/16 against 3 node address(es) and the service range 10.100.0.0/16 (--service-cidr)",
    );
    // the default pod range is clear of it
    expect(await install({ kubeconfig: api.kubeconfigPath, timeout: 0 }, io().io)).toBe(0);
  });

  test("a ClusterIP inside the range is a certain overlap (k3s: 10.43.0.1 in the default 10.32.0.0/12)", async () => {
    const api = await cluster(undefined, "10.43.0.1");
    const e = await refusal(install({ kubeconfig: api.kubeconfigPath }, io().io));
    expect(e.code).toBe("E_RANGE_OVERLAP");
    expect(e.message).toStartWith(
      "--ipalloc-range 10.32.0.0/12 overlaps the service range: it holds 10.43.0.1, the ClusterIP of Service default/kubernetes",
    );
    expect(writes(api)).toEqual([]);
  });

  test("without a kubernetes Service the service range is reported unchecked", async () => {
    const api = await cluster(undefined, null);
    const { r, io: inout } = io();
    expect(await install({ kubeconfig: api.kubeconfigPath, timeout: 0 }, inout)).toBe(0);
    expect(r.logs.some((l) => l.includes("the service range is unknown") && l.includes("pass --service-cidr"))).toBe(
      true,
    );
  });

  test("--password-secret: the Secret from WEAVE_PASSWORD, the agents' env from it, nothing printed or logged", async () => {
    const api = await cluster();
    const password = "tr0ub4dor-and-3-more-words";
    const { r, io: inout } = io();
    inout.env = { WEAVE_PASSWORD: password };
    expect(await install({ kubeconfig: api.kubeconfigPath, passwordSecret: "weave-passwd", timeout: 0 }, inout)).toBe(
      0,
    );
    const secret = api.store.get("v1", "Secret", "weave-passwd", "kube-system")!;
    expect(secret.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("weave");
    expect(Buffer.from(secret.data["weave-password"], "base64").toString()).toBe(password);
    const ds = api.store.get("apps/v1", "DaemonSet", "weave-net", "kube-system")!;
    const env = ds.spec.template.spec.containers[0].env as { name: string; valueFrom?: unknown; value?: string }[];
    expect(env.find((e) => e.name === "WEAVE_PASSWORD")).toEqual({
      name: "WEAVE_PASSWORD",
      valueFrom: { secretKeyRef: { name: "weave-passwd", key: "weave-password" } },
    });
    expect(api.store.get("v1", "ConfigMap", "weave-net", "kube-system")!.data["password-secret"]).toBe("weave-passwd");
    // the Secret is applied before the DaemonSet that refers to it
    const paths = patches(api).map((p) => p.path.split("/").slice(-2).join("/"));
    expect(paths.indexOf("secrets/weave-passwd")).toBeLessThan(paths.indexOf("daemonsets/weave-net"));
    expect(r.logs).toContain("applied Secret kube-system/weave-passwd");
    expect(r.out).toContain("encryption on: the agents' WEAVE_PASSWORD comes from Secret kube-system/weave-passwd");
    const said = r.out + r.logs.join("\n");
    expect(said).not.toContain(password);
    expect(said).not.toContain(Buffer.from(password).toString("base64"));

    // again: nothing changes
    const rv = secret.metadata.resourceVersion;
    const again = io();
    again.io.env = { WEAVE_PASSWORD: password };
    await install({ kubeconfig: api.kubeconfigPath, passwordSecret: "weave-passwd", timeout: 0 }, again.io);
    expect(api.store.get("v1", "Secret", "weave-passwd", "kube-system")!.metadata.resourceVersion).toBe(rv);

    // uninstall removes the Secret it made with the rest
    const gone = io();
    expect(await uninstall({ kubeconfig: api.kubeconfigPath }, gone.io)).toBe(0);
    expect(api.store.get("v1", "Secret", "weave-passwd", "kube-system")).toBeUndefined();
    expect(present(api)).toEqual([]);
    expect(gone.r.out).toStartWith("weave uninstalled: 8 object(s) deleted, 0 already gone");
    expect(gone.r.logs).toContain("deleted Secret kube-system/weave-passwd");
  });

  test("--password-file: the password from a file, its trailing newline dropped", async () => {
    const api = await cluster();
    const dir = mkdtempSync(join(tmpdir(), "weave-pw-"));
    dirs.push(dir);
    const file = join(dir, "password");
    writeFileSync(file, "from-a-file\n", { mode: 0o600 });
    expect(
      await install(
        { kubeconfig: api.kubeconfigPath, passwordSecret: "weave-passwd", passwordFile: file, timeout: 0 },
        io().io,
      ),
    ).toBe(0);
    const secret = api.store.get("v1", "Secret", "weave-passwd", "kube-system")!;
    expect(Buffer.from(secret.data["weave-password"], "base64").toString()).toBe("from-a-file");
  });

  test("--password-secret without a password, or naming a Secret not made by install, is refused before any write", async () => {
    const api = await cluster();
    const none = await refusal(install({ kubeconfig: api.kubeconfigPath, passwordSecret: "weave-passwd" }, io().io));
    expect(none.code).toBe("E_BAD_PASSWORD");
    expect(none.message).toContain(
      "needs the password: put it in WEAVE_PASSWORD or in a file given as --password-file",
    );
    expect(api.requests).toEqual([]);

    api.store.put({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "theirs", namespace: "kube-system" },
      data: { "weave-password": Buffer.from("keep").toString("base64") },
    });
    const { io: inout } = io();
    inout.env = { WEAVE_PASSWORD: "ours" };
    const e = await refusal(install({ kubeconfig: api.kubeconfigPath, passwordSecret: "theirs" }, inout));
    expect(e.code).toBe("E_NOT_OURS");
    expect(e.message).toStartWith("Secret kube-system/theirs exists and was not made by weave install");
    expect(e.message).toContain("kubectl delete secret -n kube-system theirs");
    expect(patches(api)).toEqual([]);
    expect(api.store.get("v1", "Secret", "theirs", "kube-system")!.data["weave-password"]).toBe(
      Buffer.from("keep").toString("base64"),
    );
  });

  test("--dry-run and -o touch nothing: no request at all", async () => {
    const api = await cluster();
    const before = api.requests.length;
    const { r, io: inout } = io();
    expect(await install({ kubeconfig: api.kubeconfigPath, dryRun: true }, inout)).toBe(0);
    expect(await install({ kubeconfig: api.kubeconfigPath, output: "json" }, inout)).toBe(0);
    expect(api.requests.length).toBe(before);
    expect(r.out).toContain("kind: DaemonSet");
    expect(present(api)).toEqual([]);
  });

  test("refuses to take over a weave-net of someone else's (a Weave Net 2.x install)", async () => {
    const api = await cluster();
    api.store.put({
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "weave-net", namespace: "kube-system", labels: { name: "weave-net" } },
      spec: {},
    });
    const e = await refusal(install({ kubeconfig: api.kubeconfigPath }, io().io));
    expect(e.code).toBe("E_NOT_OURS");
    expect(e.message).toStartWith("DaemonSet kube-system/weave-net exists and was not made by weave install");
    expect(patches(api)).toEqual([]);
  });
});

describe("weave uninstall against the stand-in", () => {
  test("deletes exactly ours, leaves the rest, and is idempotent", async () => {
    const api = await cluster();
    api.store.put({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "unrelated", namespace: "kube-system" },
      data: { keep: "me" },
    });
    api.store.put({
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "coredns", namespace: "kube-system" },
    });
    await install({ kubeconfig: api.kubeconfigPath, timeout: 0 }, io().io);
    expect(present(api)).toHaveLength(7);

    const { r, io: inout } = io();
    expect(await uninstall({ kubeconfig: api.kubeconfigPath }, inout)).toBe(0);
    expect(present(api)).toEqual([]);
    expect(api.requests.filter((q) => q.method === "DELETE").map((q) => q.path.split("/").slice(-2).join("/"))).toEqual(
      [
        "daemonsets/weave-net",
        "configmaps/weave-net",
        "rolebindings/weave-net",
        "roles/weave-net",
        "clusterrolebindings/weave-net",
        "clusterroles/weave-net",
        "serviceaccounts/weave-net",
      ],
    );
    expect(api.store.get("v1", "ConfigMap", "unrelated", "kube-system")?.data).toEqual({ keep: "me" });
    expect(api.store.get("v1", "ServiceAccount", "coredns", "kube-system")).toBeDefined();
    expect(r.out).toStartWith("weave uninstalled: 7 object(s) deleted, 0 already gone");

    const again = io();
    expect(await uninstall({ kubeconfig: api.kubeconfigPath }, again.io)).toBe(0);
    expect(again.r.out).toStartWith("weave uninstalled: 0 object(s) deleted, 7 already gone");
  });

  test("leaves a weave-net object that install did not make", async () => {
    const api = await cluster();
    api.store.put({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "weave-net", namespace: "kube-system", annotations: { "kube-peers.weave.works/peers": "x" } },
    });
    const { r, io: inout } = io();
    await uninstall({ kubeconfig: api.kubeconfigPath }, inout);
    expect(api.store.get("v1", "ConfigMap", "weave-net", "kube-system")).toBeDefined();
    expect(r.out).toContain("left alone, not ours: ConfigMap kube-system/weave-net");
  });
});

describe("setup-cni beside another network's config", () => {
  const confDirWith = (files: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), "weave-netd-"));
    dirs.push(dir);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  };
  const flannel = JSON.stringify({
    cniVersion: "0.3.1",
    name: "cbr0",
    plugins: [
      { type: "flannel", delegate: { isDefaultGateway: true } },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  });

  test("which files count: another network's do; loopback, our own, non-JSON and our file do not", () => {
    const dir = confDirWith({
      "10-flannel.conflist": flannel,
      "99-loopback.conf": '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}',
      "05-old-weave.conf": '{"name":"weave","type":"weave-net"}',
      "junk.json": "not json",
      "10-weave.conflist": "{}",
      README: "x",
      "87-podman.conflist.bak": flannel,
    });
    const { conflicts, ignored } = findConflicts(dir);
    expect(conflicts).toEqual([{ file: join(dir, "10-flannel.conflist"), types: ["flannel", "portmap"] }]);
    expect(ignored.map((i) => i.file.split("/").at(-1))).toEqual([
      "05-old-weave.conf",
      "99-loopback.conf",
      "junk.json",
    ]);
  });

  test("refuses, says why, and puts a WeaveCNIConflict event on the Node", async () => {
    const api = await cluster();
    const dir = confDirWith({ "10-flannel.conflist": flannel });
    const term = join(dir, "termination-log");
    writeFileSync(term, "");
    const logs: string[] = [];
    const e = await refusal(
      setupCni(
        { binDir: join(dir, "bin"), confDir: dir, kubeconfig: api.kubeconfigPath, nodeName: "n2" },
        { env: {}, log: (l) => void logs.push(l), out: () => {}, terminationLog: term },
      ),
    );
    expect(e.code).toBe("E_CNI_CONFLICT");
    expect(e.message).toContain(`${dir}/10-flannel.conflist (plugin types: flannel, portmap)`);
    expect(e.message).toContain("classic outage");
    expect(e.message).toContain("--force");
    expect(logs[0]).toBe(e.message);
    expect(logs).toContain("recorded event WeaveCNIConflict on node n2 (kubectl describe node n2)");
    expect(readFileSync(term, "utf8")).toBe(e.message);

    const events = api.store.list("v1", "Event", "default");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      involvedObject: { kind: "Node", name: "n2", uid: api.store.get("v1", "Node", "n2")!.metadata.uid },
      reason: "WeaveCNIConflict",
      type: "Warning",
      message: e.message,
      count: 1,
      source: { component: "weave-setup-cni", host: "n2" },
    });
    // nothing was installed
    expect(readFileSync(join(dir, "10-flannel.conflist"), "utf8")).toBe(flannel);
    expect(findConflicts(dir).conflicts).toHaveLength(1);
  });

  test("outside a cluster it refuses without an event; with --force it goes on", async () => {
    const dir = confDirWith({ "10-flannel.conflist": flannel });
    const logs: string[] = [];
    const quiet = { env: { HOSTNAME: "n1" }, log: (l: string) => void logs.push(l), out: () => {} };
    expect((await refusal(setupCni({ binDir: join(dir, "bin"), confDir: dir }, quiet))).code).toBe("E_CNI_CONFLICT");
    expect(logs.some((l) => l.includes("recorded event"))).toBe(false);
    // --force passes the check (and then needs the compiled binary, which a unit test is not)
    const forced = await refusal(setupCni({ binDir: join(dir, "bin"), confDir: dir, force: true }, quiet));
    expect(forced.code).toBe("E_NOT_COMPILED");
    expect(logs.at(-1)).toBe(`--force: installing beside ${dir}/10-flannel.conflist anyway`);
  });

  test("an API server that refuses the event does not hide the refusal", async () => {
    const api = await cluster();
    await api.down();
    const dir = confDirWith({ "10-flannel.conflist": flannel });
    const logs: string[] = [];
    const e = await refusal(
      setupCni(
        { binDir: join(dir, "bin"), confDir: dir, kubeconfig: api.kubeconfigPath, nodeName: "n1" },
        { env: {}, log: (l) => void logs.push(l), out: () => {} },
      ),
    );
    expect(e.code).toBe("E_CNI_CONFLICT");
    expect(logs.at(-1)).toStartWith(
      "could not record event WeaveCNIConflict on node n1: recording event WeaveCNIConflict on node n1:",
    );
  });
});
