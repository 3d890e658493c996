/**
 * The real kubectl (/usr/bin/kubectl, a v1.32 client) against the lab's API server
 * (net/lab/api-server.ts), in this process on 127.0.0.1, with a kubeconfig, HOME and
 * discovery cache of its own in a temp dir. Each test runs kubectl as a user would and
 * checks what it prints: discovery and short names, get in every output, client-side and
 * server-side apply, create, label, annotate, delete with its wait, describe, events,
 * default validation, logs and exec through fake kubelet hooks. Needs no root; skipped,
 * loudly, when kubectl is missing.
 *
 * kubectl runs with Bun.spawn, never spawnSync: the server answers on this very event loop.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ApiServer, findDef, type PodRuntime, startApiServer } from "../../net/lab/api-server.ts";
import { until } from "../support/wait.ts";

const KUBECTL = "/usr/bin/kubectl";
const haveKubectl = existsSync(KUBECTL);
if (!haveKubectl)
  console.warn(`kubectl tests skipped: ${KUBECTL} is missing (a v1.32 kubectl is part of the machine image)`);

interface Run {
  code: number;
  out: string;
  err: string;
}

describe.skipIf(!haveKubectl)("the real kubectl against the lab's API server", () => {
  let api: ApiServer;
  let dir: string;
  let logFile: string;
  let stopKubelet = () => {};

  /** kubectl with this test's kubeconfig, HOME and cache; stdin if given. */
  async function kubectl(args: string[], stdin?: string): Promise<Run> {
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: dir,
      KUBECONFIG: api.kubeconfigPath,
      KUBECACHEDIR: join(dir, "cache"),
    };
    const p = Bun.spawn([KUBECTL, ...args], {
      env,
      stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => p.kill(), 20_000);
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    clearTimeout(timer);
    return { code, out, err };
  }

  /** kubectl that must succeed; its stdout. */
  async function ok(args: string[], stdin?: string): Promise<string> {
    const r = await kubectl(args, stdin);
    expect(r.code, `kubectl ${args.join(" ")}: ${r.err}`).toBe(0);
    return r.out;
  }

  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  /** The fake kubelet's hooks: one log file for container "c", exec runs the command on this host. */
  const runtime: PodRuntime = {
    logs: (_pod, container, opts) => (container === "c" && !opts.previous ? logFile : undefined),
    exec: (_pod, _container, request) =>
      request.command[0] === "forbidden" ? { error: "not in this lab" } : { argv: request.command },
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weave-kubectl-"));
    logFile = join(dir, "c.log");
    writeFileSync(logFile, "first line\nsecond line\n2026-01-01T00:00:00.000000001Z stdout F a CRI line\n");
    api = await startApiServer({ kubernetesService: true, gracefulPodDeletion: true, pods: runtime });
    api.store.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n1", labels: { "node-role.kubernetes.io/control-plane": "" } },
      status: {
        addresses: [{ type: "InternalIP", address: "198.18.0.11" }],
        conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "lab kubelet is ready" }],
        nodeInfo: { kubeletVersion: "v1.32.0-lab", osImage: "Debian GNU/Linux 12", kernelVersion: "6.18.0" },
      },
    });
    // What the lab kubelet does with a pod being deleted: it stops it, then deletes it for good.
    const sub = api.store.subscribe({
      def: findDef("v1", "Pod"),
      match: (o) => o.metadata.deletionTimestamp !== undefined,
      send: (e) => {
        if (e.type !== "MODIFIED") return;
        const { name, namespace } = e.object.metadata;
        setTimeout(() => api.store.delete("v1", "Pod", name, namespace), 400);
      },
    });
    if (sub !== "expired") stopKubelet = sub;
  });

  afterAll(async () => {
    stopKubelet();
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const POD = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox:1.36
    ports: [{containerPort: 80}]
`;

  test("version and api-resources: the kinds, their short names, kubectl 1.32", async () => {
    const version = await ok(["version"]);
    expect(version).toContain("Server Version: v1.32.0-weave-lab");
    const resources = await ok(["api-resources"]);
    const row = (name: string) =>
      resources
        .split("\n")
        .find((l) => l.startsWith(`${name} `))
        ?.split(/\s+/);
    expect(row("pods")).toEqual(["pods", "po", "v1", "true", "Pod"]);
    expect(row("namespaces")).toEqual(["namespaces", "ns", "v1", "false", "Namespace"]);
    expect(row("daemonsets")).toEqual(["daemonsets", "ds", "apps/v1", "true", "DaemonSet"]);
    expect(row("networkpolicies")).toEqual([
      "networkpolicies",
      "netpol",
      "networking.k8s.io/v1",
      "true",
      "NetworkPolicy",
    ]);
    for (const short of ["no", "cm", "svc", "sa", "ev", "ep"]) expect(resources).toContain(` ${short} `);
    const inAll = await ok(["api-resources", "--categories=all", "-o", "name"]);
    expect(inAll.split("\n").filter(Boolean).sort()).toEqual(["daemonsets.apps", "pods", "services"]);
  });

  test("explain: fields and types from the OpenAPI v3 documents", async () => {
    const explained = await ok(["explain", "pod.spec.containers"]);
    expect(explained).toContain("KIND:       Pod");
    expect(explained).toMatch(/image\s+<string>/);
    expect(explained).toMatch(/ports\s+<\[\]ContainerPort>/);
  });

  test("get: tables by short name, -o wide, -A, -o json and yaml keep the full objects", async () => {
    const ns = await ok(["get", "ns"]);
    expect(ns.split("\n")[0]?.split(/\s+/)).toEqual(["NAME", "STATUS", "AGE"]);
    expect(ns).toMatch(/kube-system\s+Active/);
    const nodes = await ok(["get", "no", "-o", "wide"]);
    expect(nodes).toMatch(
      /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+INTERNAL-IP\s+EXTERNAL-IP\s+OS-IMAGE\s+KERNEL-VERSION/,
    );
    expect(nodes).toMatch(
      /n1\s+Ready\s+control-plane\s+\S+\s+v1\.32\.0-lab\s+198\.18\.0\.11\s+<none>\s+Debian GNU\/Linux 12/,
    );
    const svc = await ok(["get", "svc", "-A"]);
    expect(svc).toMatch(/^NAMESPACE\s+NAME\s+TYPE\s+CLUSTER-IP/);
    expect(svc).toMatch(/default\s+kubernetes\s+ClusterIP\s+10\.96\.0\.1\s+<none>\s+443\/TCP/);
    const sa = await ok(["get", "sa", "-A", "-o", "json"]);
    const list = JSON.parse(sa);
    expect(list.kind).toBe("List");
    expect(list.items.map((i: { metadata: { namespace: string } }) => i.metadata.namespace).sort()).toEqual([
      "default",
      "kube-node-lease",
      "kube-public",
      "kube-system",
    ]);
    const yaml = await ok(["get", "ns", "default", "-o", "yaml"]);
    expect(yaml).toContain("kubernetes.io/metadata.name: default");
    expect(yaml).toContain("phase: Active");
  });

  test("apply (client-side) twice: created, then configured by a patch, then unchanged", async () => {
    const path = file("web.yaml", POD);
    expect(await ok(["apply", "-f", path])).toBe("pod/web created\n");
    const pods = await ok(["get", "po", "-o", "wide"]);
    expect(pods).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES/);
    expect(pods).toMatch(/web\s+0\/1\s+Pending\s+0\s+\S+\s+<none>\s+n1\s+<none>\s+<none>/);
    writeFileSync(path, POD.replace("busybox:1.36", "busybox:1.37"));
    expect(await ok(["apply", "-f", path])).toBe("pod/web configured\n");
    expect(await ok(["get", "pod", "web", "-o", "jsonpath={.spec.containers[0].image}"])).toBe("busybox:1.37");
    expect(await ok(["apply", "-f", path])).toBe("pod/web unchanged\n");
    const defaults = JSON.parse(await ok(["get", "pod", "web", "-o", "json"]));
    expect(defaults.spec).toMatchObject({
      serviceAccountName: "default",
      restartPolicy: "Always",
      dnsPolicy: "ClusterFirst",
    });
    expect(defaults.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]).toContain("busybox:1.37");
  });

  test("apply --server-side: the manager kubectl owns the fields; a re-apply removes what it dropped", async () => {
    const ds = (env: string) => `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: weave-net, namespace: kube-system}
spec:
  selector: {matchLabels: {name: weave-net}}
  template:
    metadata: {labels: {name: weave-net}}
    spec:
      containers:
      - name: weave
        image: weave:1
        env: [${env}]
`;
    const path = file("ds.yaml", ds('{name: A, value: "1"}, {name: B, value: "2"}'));
    expect(await ok(["apply", "--server-side", "-f", path])).toBe("daemonset.apps/weave-net serverside-applied\n");
    writeFileSync(path, ds('{name: A, value: "1"}'));
    await ok(["apply", "--server-side", "-f", path]);
    const got = JSON.parse(
      await ok(["get", "ds", "-n", "kube-system", "weave-net", "-o", "json", "--show-managed-fields"]),
    );
    expect(got.spec.template.spec.containers[0].env).toEqual([{ name: "A", value: "1" }]);
    expect(got.spec.updateStrategy.type).toBe("RollingUpdate");
    expect(
      got.metadata.managedFields.map((m: { manager: string; operation: string }) => `${m.manager}/${m.operation}`),
    ).toContain("kubectl/Apply");
    const wide = await ok(["get", "ds", "-A", "-o", "wide"]);
    expect(wide).toMatch(
      /NAMESPACE\s+NAME\s+DESIRED\s+CURRENT\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+NODE SELECTOR\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR/,
    );
    expect(wide).toMatch(
      /kube-system\s+weave-net\s+0\s+0\s+0\s+0\s+0\s+<none>\s+\S+\s+weave\s+weave:1\s+name=weave-net/,
    );
  });

  test("create: from a file, a namespace, a configmap from literals (protobuf bodies)", async () => {
    const np = file(
      "np.yaml",
      `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}}]
    ports: [{port: 80}]
`,
    );
    expect(await ok(["create", "-f", np])).toBe("networkpolicy.networking.k8s.io/allow-web created\n");
    const again = await kubectl(["create", "-f", np]);
    expect(again.code).toBe(1);
    expect(again.err).toContain('networkpolicies.networking.k8s.io "allow-web" already exists');
    expect(await ok(["get", "netpol"])).toMatch(/NAME\s+POD-SELECTOR\s+AGE\nallow-web\s+app=web\s+/);
    expect(await ok(["get", "netpol", "allow-web", "-o", "jsonpath={.spec.policyTypes}"])).toBe('["Ingress"]');
    expect(await ok(["create", "namespace", "scratch"])).toBe("namespace/scratch created\n");
    expect(await ok(["get", "sa", "-n", "scratch", "-o", "name"])).toBe("serviceaccount/default\n");
    await ok(["create", "configmap", "settings", "-n", "scratch", "--from-literal=a=1", "--from-literal=b=two"]);
    expect(await ok(["get", "cm", "settings", "-n", "scratch", "-o", "jsonpath={.data}"])).toBe('{"a":"1","b":"two"}');
    expect(await ok(["get", "cm", "-n", "scratch"])).toMatch(/NAME\s+DATA\s+AGE\nsettings\s+2\s+/);
  });

  test("label and annotate: add, --overwrite, remove with key-; -l with set-based selectors", async () => {
    expect(await ok(["label", "pod", "web", "tier=front"])).toBe("pod/web labeled\n");
    const again = await kubectl(["label", "pod", "web", "tier=back"]);
    expect(again.code).toBe(1);
    expect(again.err).toContain("'tier' already has a value (front), and --overwrite is false");
    await ok(["label", "pod", "web", "tier=back", "--overwrite"]);
    expect(await ok(["get", "po", "-l", "tier in (back,middle),app", "-o", "name"])).toBe("pod/web\n");
    expect(await ok(["get", "po", "-l", "tier notin (back)", "-o", "name"])).toBe("");
    expect(await ok(["get", "po", "-l", "!tier", "-o", "name"])).toBe("");
    expect(await ok(["label", "pod", "web", "tier-"])).toBe("pod/web unlabeled\n");
    expect(await ok(["get", "po", "-l", "!tier", "-o", "name"])).toBe("pod/web\n");
    expect(await ok(["annotate", "pod", "web", "note=hello"])).toBe("pod/web annotated\n");
    await ok(["annotate", "pod", "web", "note=bye", "--overwrite"]);
    expect(await ok(["get", "pod", "web", "-o", "jsonpath={.metadata.annotations.note}"])).toBe("bye");
    await ok(["annotate", "pod", "web", "note-"]);
    expect(await ok(["get", "pod", "web", "-o", "jsonpath={.metadata.annotations.note}"])).toBe("");
  });

  test("get events and describe pod, node, daemonset, networkpolicy, namespace", async () => {
    const pod = api.store.get("v1", "Pod", "web", "default")!;
    api.store.put({
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: "web.1", namespace: "default" },
      involvedObject: { kind: "Pod", name: "web", namespace: "default", uid: pod.metadata.uid, apiVersion: "v1" },
      reason: "Scheduled",
      message: "Successfully assigned default/web to n1",
      type: "Normal",
      source: { component: "default-scheduler" },
      firstTimestamp: new Date().toISOString(),
      lastTimestamp: new Date().toISOString(),
      count: 1,
    });
    const events = await ok(["get", "events"]);
    expect(events).toMatch(/^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\n/);
    expect(events).toMatch(/Normal\s+Scheduled\s+pod\/web\s+Successfully assigned default\/web to n1/);
    const describedPod = await ok(["describe", "pod", "web"]);
    expect(describedPod).toMatch(/Node:\s+n1/);
    expect(describedPod).toMatch(/Tolerations:\s+node\.kubernetes\.io\/not-ready:NoExecute op=Exists for 300s/);
    expect(describedPod).toMatch(
      /Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default\/web to n1/,
    );
    const describedNode = await ok(["describe", "node", "n1"]);
    expect(describedNode).toMatch(/Roles:\s+control-plane/);
    expect(describedNode).toMatch(/Non-terminated Pods:\s+\(1 in total\)/);
    expect(describedNode).toMatch(/default\s+web\s+/);
    expect(await ok(["describe", "ds", "-n", "kube-system", "weave-net"])).toMatch(/Selector:\s+name=weave-net/);
    const describedNp = await ok(["describe", "netpol", "allow-web"]);
    expect(describedNp).toMatch(/PodSelector:\s+app=web/);
    expect(describedNp).toMatch(/Policy Types: Ingress/);
    expect(await ok(["describe", "ns", "scratch"])).toMatch(/Status:\s+Active/);
  });

  test("default validation: unknown fields refused (Strict) or warned of; an invalid NetworkPolicy is 422", async () => {
    const bad = file(
      "bad.yaml",
      POD.replace("name: web", "name: bad").replace("  nodeName: n1", "  nodeName: n1\n  colour: blue"),
    );
    const strict = await kubectl(["apply", "-f", bad]);
    expect(strict.code).toBe(1);
    expect(strict.err).toContain('strict decoding error: unknown field "spec.colour"');
    const ssa = await kubectl(["apply", "--server-side", "-f", bad]);
    expect(ssa.code).toBe(1);
    expect(ssa.err).toContain(".spec.colour: field not declared in schema");
    const warned = await kubectl(["create", "--validate=warn", "-f", bad]);
    expect(warned.code).toBe(0);
    expect(warned.err).toContain('Warning: unknown field "spec.colour"');
    const np = file(
      "bad-np.yaml",
      `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 0}, {protocol: ICMP, port: 80}, {port: 9000, endPort: 8000}]
    from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]
`,
    );
    const refused = await kubectl(["apply", "-f", np]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('The NetworkPolicy "bad" is invalid:');
    expect(refused.err).toContain(
      "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
    );
    expect(refused.err).toContain('spec.ingress[0].ports[1].protocol: Unsupported value: "ICMP"');
    expect(refused.err).toContain(
      "spec.ingress[0].ports[2].endPort: Invalid value: 9000: must be greater than or equal to `port`",
    );
    expect(refused.err).toContain(
      'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict subset of `cidr`',
    );
    const noContainers = await kubectl(
      ["create", "-f", "-"],
      '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"empty"},"spec":{}}',
    );
    expect(noContainers.err).toContain('The Pod "empty" is invalid: spec.containers: Required value');
  });

  test("logs: the file the kubelet names, --tail, --timestamps, -c, -f follows until the pod goes", async () => {
    expect(await ok(["logs", "web"])).toBe("first line\nsecond line\na CRI line\n");
    expect(await ok(["logs", "web", "--tail=1", "--timestamps"])).toBe("2026-01-01T00:00:00.000000001Z a CRI line\n");
    const wrong = await kubectl(["logs", "web", "-c", "nope"]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain("container nope is not valid for pod web");
    const previous = await kubectl(["logs", "web", "--previous"]);
    expect(previous.err).toContain('previous terminated container "c" in pod "web" not found');

    api.store.put({
      ...api.store.get("v1", "Pod", "web", "default")!,
      metadata: { name: "tail", namespace: "default" },
    });
    const follow = Bun.spawn([KUBECTL, "logs", "-f", "tail"], {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        KUBECONFIG: api.kubeconfigPath,
        KUBECACHEDIR: join(dir, "cache"),
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      let seen = "";
      const reader = (async () => {
        for await (const chunk of follow.stdout) seen += new TextDecoder().decode(chunk);
      })();
      await until(() => seen.includes("a CRI line"), 10_000, 20, "kubectl logs -f printed the log");
      appendFileSync(logFile, "a new line\n");
      await until(() => seen.includes("a new line\n"), 10_000, 20, "kubectl logs -f printed the new line");
      api.store.delete("v1", "Pod", "tail", "default");
      expect(await follow.exited).toBe(0);
      await reader;
    } finally {
      follow.kill();
    }
  });

  test("exec: stdout, stderr, exit codes, stdin with -i, the kubelet's refusal", async () => {
    const r = await kubectl(["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r).toEqual({ code: 3, out: "out\n", err: "err\ncommand terminated with exit code 3\n" });
    expect(await ok(["exec", "web", "-c", "c", "--", "echo", "hello"])).toBe("hello\n");
    expect(await ok(["exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z"], "from stdin\n")).toBe("FROM STDIN\n");
    const refused = await kubectl(["exec", "web", "--", "forbidden"]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("not in this lab");
  });

  test("delete waits: a bound pod shows Terminating until the kubelet removes it; a namespace takes its objects", async () => {
    const deleting = kubectl(["delete", "pod", "web"]);
    await until(() => api.store.get("v1", "Pod", "web", "default")?.metadata.deletionTimestamp, 10_000, 10, "marked");
    expect(await ok(["get", "pod", "web"])).toMatch(/web\s+0\/1\s+Terminating/);
    const r = await deleting;
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('pod "web" deleted\n');
    expect(api.store.get("v1", "Pod", "web", "default")).toBeUndefined();
    expect(await ok(["delete", "ns", "scratch"])).toBe('namespace "scratch" deleted\n');
    expect(api.store.list("v1", "ConfigMap", "scratch")).toEqual([]);
    const gone = await kubectl(["get", "ns", "scratch"]);
    expect(gone.err).toContain('namespaces "scratch" not found');
  });
});
