// biome-ignore-all lint/suspicious/noExplicitAny: results and manifests are read as loose JSON, field by field
/**
 * The manifests (manifests/): every object validates against the Kubernetes OpenAPI
 * schema (kubernetes-models), no object has a field the schema does not know (our own
 * walk, see FieldCheck), the DaemonSet is what the issue asks for, and each setting,
 * given as a flag or in the environment, changes the manifests as documented.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import type { KubernetesObject, V1Container, V1DaemonSet, V1EnvVar } from "@kubernetes/client-node";
import { ConfigMap, Secret, ServiceAccount } from "kubernetes-models/v1";
import { DaemonSet } from "kubernetes-models/apps/v1";
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import ts from "typescript";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { run } from "../../commands/install.ts";
import {
  DEFAULT_IMAGE,
  manifestSettings,
  renderManifests,
  settingsFrom,
  toJson,
  toYaml,
  type ManifestSettings,
} from "../../manifests/objects.ts";
import type { WeaveError } from "../../net/errors.ts";
import { ROOT } from "../support/env.ts";

const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "apps/v1/DaemonSet": DaemonSet,
  "rbac.authorization.k8s.io/v1/ClusterRole": ClusterRole,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": ClusterRoleBinding,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
};
const keyOf = (o: KubernetesObject) => `${o.apiVersion}/${o.kind}`;

/**
 * Field names the schema allows, from the TypeScript definitions kubernetes-models
 * generates from the same OpenAPI document (its validators accept unknown names, its
 * types do not): the object is walked alongside its interface, and a key that is no
 * property of the type at that point (and no key of a map type) is reported by path.
 */
class FieldCheck {
  private checker: ts.TypeChecker;
  private roots = new Map<string, ts.Type>();
  constructor(kinds: string[]) {
    const base = `${ROOT}/node_modules/kubernetes-models`;
    const fileOf = (k: string) => `${base}/${k}.d.ts`;
    const program = ts.createProgram(kinds.map(fileOf), { noEmit: true, skipLibCheck: true, types: [] });
    this.checker = program.getTypeChecker();
    for (const k of kinds) {
      const sf = program.getSourceFile(fileOf(k));
      const mod = sf && this.checker.getSymbolAtLocation(sf);
      const kind = k.split("/").at(-1)!;
      const sym = mod && this.checker.getExportsOfModule(mod).find((s) => s.name === `I${kind}`);
      if (!sym) throw new Error(`no interface I${kind} in ${fileOf(k)}`);
      this.roots.set(k, this.checker.getDeclaredTypeOfSymbol(sym));
    }
  }
  unknownFields(o: KubernetesObject): string[] {
    const root = this.roots.get(keyOf(o));
    if (!root) return [`(no schema type for ${keyOf(o)})`];
    const out: string[] = [];
    this.walk(o, root, "", out);
    return out;
  }
  private walk(value: unknown, t: ts.Type, path: string, out: string[]): void {
    const c = this.checker;
    const type = c.getNonNullableType(t);
    const members = type.isUnion() ? type.types : [type];
    if (Array.isArray(value)) {
      const el = members.map((m) => c.getIndexTypeOfType(m, ts.IndexKind.Number)).find(Boolean);
      if (!el) return void out.push(`${path} (a list where the schema has none)`);
      for (const [i, v] of value.entries()) this.walk(v, el, `${path}[${i}]`, out);
      return;
    }
    if (value === null || typeof value !== "object") return;
    const map = members.map((m) => c.getIndexTypeOfType(m, ts.IndexKind.String)).find(Boolean);
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      const prop = members.map((m) => c.getPropertyOfType(m, k)).find(Boolean);
      if (prop) this.walk(v, c.getTypeOfSymbol(prop), at, out);
      else if (map) this.walk(v, map, at, out);
      else out.push(at);
    }
  }
}

const every = manifestSettings({
  image: "registry.example/weave:9",
  ipallocRange: "10.40.0.0/16",
  mtu: 1400,
  connLimit: 50,
  noMasqLocal: false,
  extraArgs: "--no-discovery",
  passwordSecret: { name: "weave-passwd", password: new TextEncoder().encode("s3cret") },
});
const ds = (s: ManifestSettings) => renderManifests(s).find((o) => o.kind === "DaemonSet") as V1DaemonSet;
const agent = (d: V1DaemonSet) => d.spec!.template.spec!.containers[0]!;
const envOf = (c: V1Container) =>
  Object.fromEntries((c.env ?? []).map((e: V1EnvVar) => [e.name, e.value ?? e.valueFrom]));

let fields: FieldCheck;
beforeAll(() => {
  fields = new FieldCheck(Object.keys(MODELS));
}, 30_000);

describe("the manifests against the Kubernetes schema", () => {
  test.each([
    ["defaults", manifestSettings()],
    ["every setting", every],
  ])("%s: every object validates (kubernetes-models)", (_, s) => {
    const objs = renderManifests(s);
    expect(objs.map(keyOf).sort()).toEqual(
      Object.keys(MODELS)
        .filter((k) => s.passwordSecret || k !== "v1/Secret")
        .sort(),
    );
    for (const o of objs) expect(() => new MODELS[keyOf(o)]!(structuredClone(o) as never).validate()).not.toThrow();
  });

  test.each([
    ["defaults", manifestSettings()],
    ["every setting", every],
  ])("%s: no field name the schema does not know", (_, s) => {
    for (const o of renderManifests(s)) expect({ [keyOf(o)]: fields.unknownFields(o) }).toEqual({ [keyOf(o)]: [] });
  });

  test("the field check catches misspelt names that kubernetes-models lets through", () => {
    const bad: any = structuredClone(ds(manifestSettings()));
    bad.spec.template.spec.hostNetwrok = true;
    expect(() => new DaemonSet(structuredClone(bad)).validate()).not.toThrow();
    bad.metadata.lables = {};
    bad.spec.template.spec.containers[0].readinessProbe.httpGet.hots = "127.0.0.1";
    bad.spec.template.spec.volumes[0].hostPath.pth = "/x";
    expect(fields.unknownFields(bad).sort()).toEqual([
      "metadata.lables",
      "spec.template.spec.containers[0].readinessProbe.httpGet.hots",
      "spec.template.spec.hostNetwrok",
      "spec.template.spec.volumes[0].hostPath.pth",
    ]);
    // map-valued fields take any key
    expect(
      fields.unknownFields({
        ...bad,
        metadata: { name: "x", labels: { anything: "goes" }, annotations: { "a/b": "c" } },
        spec: undefined,
      } as KubernetesObject),
    ).toEqual([]);
  });

  test("YAML and JSON renderings hold the same objects", () => {
    const objs = renderManifests(every);
    const docs = parseAllDocuments(toYaml(objs)).map((d) => d.toJS());
    expect(docs).toEqual(JSON.parse(JSON.stringify(objs)));
    expect(toYaml(objs)).not.toMatch(/[&*]a\d/); // no YAML anchors/aliases for shared values
    const list = JSON.parse(toJson(objs));
    expect(list).toMatchObject({ apiVersion: "v1", kind: "List" });
    expect(list.items).toEqual(docs);
  });
});

describe("the DaemonSet and RBAC are what the issue describes", () => {
  test("DaemonSet weave-net: host network and PID, privileged, every taint, rolling", () => {
    const d = ds(manifestSettings());
    expect(d.metadata).toMatchObject({ name: "weave-net", namespace: "kube-system" });
    const pod = d.spec!.template.spec!;
    expect(pod).toMatchObject({
      hostNetwork: true,
      hostPID: true,
      priorityClassName: "system-node-critical",
      serviceAccountName: "weave-net",
    });
    expect(pod.tolerations).toEqual([
      { operator: "Exists", effect: "NoSchedule" },
      { operator: "Exists", effect: "NoExecute" },
    ]);
    expect(d.spec!.updateStrategy?.type).toBe("RollingUpdate");
    expect(d.spec!.selector.matchLabels).toEqual({ name: "weave-net" });
    expect(d.spec!.template.metadata?.labels).toMatchObject({ name: "weave-net" });
    // only the two CNI dirs, the data dir and the socket dir from the host
    expect(pod.volumes!.map((v) => [v.name, v.hostPath?.path])).toEqual([
      ["cni-bin", "/opt/cni/bin"],
      ["cni-conf", "/etc/cni/net.d"],
      ["weavedb", "/var/lib/weave"],
      ["weave-run", "/run/weave"],
    ]);
  });

  test("the init container runs setup-cni into the host's CNI dirs", () => {
    const init = ds(manifestSettings()).spec!.template.spec!.initContainers![0]!;
    expect(init.command).toEqual([
      "/usr/local/bin/weave",
      "setup-cni",
      "--bin-dir",
      "/host/opt/cni/bin",
      "--conf-dir",
      "/host/etc/cni/net.d",
    ]);
    expect(init.volumeMounts).toEqual([
      { name: "cni-bin", mountPath: "/host/opt/cni/bin" },
      { name: "cni-conf", mountPath: "/host/etc/cni/net.d" },
    ]);
    expect(envOf(init).HOSTNAME).toEqual({ fieldRef: { apiVersion: "v1", fieldPath: "spec.nodeName" } });
  });

  test("the agent: privileged, probes on 127.0.0.1:6784, requests, data dir, HOSTNAME from the node", () => {
    const c = agent(ds(manifestSettings()));
    expect(c.securityContext?.privileged).toBe(true);
    expect(c.readinessProbe?.httpGet).toEqual({ host: "127.0.0.1", port: 6784, path: "/status" });
    expect(c.livenessProbe?.httpGet?.host).toBe("127.0.0.1");
    expect(c.livenessProbe?.initialDelaySeconds).toBeGreaterThan(0);
    expect(c.resources?.requests).toEqual({ cpu: "50m", memory: "100Mi" });
    expect(c.resources?.limits).toBeUndefined(); // a limit OOM-kills an agent mid-reconcile (Weave's #3650)
    expect(c.volumeMounts).toEqual([
      { name: "weavedb", mountPath: "/var/lib/weave" },
      { name: "weave-run", mountPath: "/run/weave" },
    ]);
    expect(c.command?.join(" ")).toBe("/bin/sh -c set -f; exec /usr/local/bin/weave agent $EXTRA_ARGS");
    expect(envOf(c)).toEqual({
      HOSTNAME: { fieldRef: { apiVersion: "v1", fieldPath: "spec.nodeName" } },
      IPALLOC_RANGE: "10.32.0.0/12",
      NO_MASQ_LOCAL: "1",
    });
    expect(c.image).toBe(DEFAULT_IMAGE);
  });

  test("where to scrape: ports named metrics (6782) and npc-metrics (6781), prometheus.io annotations", () => {
    const d = ds(manifestSettings());
    expect(d.spec!.template.metadata?.annotations).toEqual({
      "prometheus.io/scrape": "true",
      "prometheus.io/port": "6782",
      "prometheus.io/path": "/metrics",
    });
    const [weave, npc] = d.spec!.template.spec!.containers;
    expect(weave!.ports).toContainEqual({ name: "metrics", containerPort: 6782, protocol: "TCP" });
    expect(npc!.ports).toEqual([{ name: "npc-metrics", containerPort: 6781, protocol: "TCP" }]);
    // port names are unique in the pod, and at most 15 characters (IANA_SVC_NAME)
    const names = [weave!, npc!].flatMap((c) => c.ports ?? []).map((p) => p.name!);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/);
  });

  test("RBAC: read nodes, pods, namespaces, policies; patch nodes/status; create and patch events; the ConfigMap by name", () => {
    const objs = renderManifests(manifestSettings());
    const rulesOf = (kind: string) => (objs.find((o) => o.kind === kind) as { rules: unknown[] }).rules;
    expect(rulesOf("ClusterRole")).toEqual([
      { apiGroups: [""], resources: ["nodes", "pods", "namespaces"], verbs: ["get", "list", "watch"] },
      { apiGroups: ["networking.k8s.io"], resources: ["networkpolicies"], verbs: ["get", "list", "watch"] },
      { apiGroups: [""], resources: ["nodes/status"], verbs: ["patch"] },
      { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
    ]);
    expect(rulesOf("Role")).toEqual([
      { apiGroups: [""], resources: ["configmaps"], resourceNames: ["weave-net"], verbs: ["get", "update", "patch"] },
      { apiGroups: [""], resources: ["configmaps"], verbs: ["create"] },
    ]);
    for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
      expect((objs.find((o) => o.kind === kind) as { subjects: unknown }).subjects).toEqual([
        { kind: "ServiceAccount", name: "weave-net", namespace: "kube-system" },
      ]);
    }
    for (const o of objs) expect(o.metadata?.labels?.["app.kubernetes.io/managed-by"]).toBe("weave");
  });
});

/** `weave install --dry-run` through the command, with flags and env; the DaemonSet's agent container and the ConfigMap back. */
async function dryRun(flags: Record<string, unknown>, env: Record<string, string> = {}, format = "yaml") {
  let out = "";
  await run(
    { dryRun: true, output: format, kubeconfig: "/nonexistent/kubeconfig", ...flags },
    {
      env,
      out: (t) => {
        out += t;
      },
      log: () => {},
    },
  );
  const objs = (
    format === "json" ? parseYaml(out).items : parseAllDocuments(out).map((d) => d.toJS())
  ) as KubernetesObject[];
  const d = objs.find((o) => o.kind === "DaemonSet") as V1DaemonSet;
  return {
    objs,
    agent: agent(d),
    env: envOf(agent(d)),
    data: (objs.find((o) => o.kind === "ConfigMap") as { data: Record<string, string> }).data,
  };
}

describe("each setting, as a flag or in the environment, changes the manifests as documented", () => {
  test("--image / WEAVE_IMAGE: both containers' image", async () => {
    for (const r of [
      await dryRun({ image: "registry.example/weave:1.2" }),
      await dryRun({}, { WEAVE_IMAGE: "registry.example/weave:1.2" }),
    ]) {
      expect(r.agent.image).toBe("registry.example/weave:1.2");
      expect((r.objs.at(-1) as V1DaemonSet).spec!.template.spec!.initContainers![0]!.image).toBe(
        "registry.example/weave:1.2",
      );
      expect(r.data.image).toBe("registry.example/weave:1.2");
      const npc = (r.objs.at(-1) as V1DaemonSet).spec!.template.spec!.containers[1]!;
      expect(npc.image).toBe("registry.example/weave:1.2");
    }
  });

  test("the pod runs two containers, weave and weave-npc (READY 2/2, as Weave Net's)", async () => {
    const d = (await dryRun({})).objs.at(-1) as V1DaemonSet;
    const containers = d.spec!.template.spec!.containers;
    expect(containers.map((c) => c.name)).toEqual(["weave", "weave-npc"]);
    const npc = containers[1]!;
    expect(npc.command).toEqual(["/usr/local/bin/weave", "npc"]);
    expect(envOf(npc).HOSTNAME).toEqual({ fieldRef: { apiVersion: "v1", fieldPath: "spec.nodeName" } });
    expect(npc.readinessProbe?.httpGet).toEqual({ host: "127.0.0.1", port: 6781, path: "/status" });
    expect(npc.securityContext?.privileged).toBe(true);
  });

  test("--ipalloc-range / IPALLOC_RANGE: env IPALLOC_RANGE", async () => {
    expect((await dryRun({ ipallocRange: "10.40.0.0/16" })).env.IPALLOC_RANGE).toBe("10.40.0.0/16");
    expect((await dryRun({}, { IPALLOC_RANGE: "172.30.0.0/16" })).env.IPALLOC_RANGE).toBe("172.30.0.0/16");
    // the flag wins over the environment
    expect(
      (await dryRun({ ipallocRange: "10.40.0.0/16" }, { IPALLOC_RANGE: "172.30.0.0/16" })).data["ipalloc-range"],
    ).toBe("10.40.0.0/16");
  });

  test("--mtu / WEAVE_MTU: env WEAVE_MTU, absent by default (each agent detects its own)", async () => {
    expect((await dryRun({ mtu: 1400 })).env.WEAVE_MTU).toBe("1400");
    expect((await dryRun({}, { WEAVE_MTU: "8950" })).env.WEAVE_MTU).toBe("8950");
    expect((await dryRun({})).env.WEAVE_MTU).toBeUndefined();
  });

  test("--conn-limit / CONN_LIMIT: env CONN_LIMIT", async () => {
    expect((await dryRun({ connLimit: 30 })).env.CONN_LIMIT).toBe("30");
    expect((await dryRun({}, { CONN_LIMIT: "500" })).env.CONN_LIMIT).toBe("500");
    expect((await dryRun({})).env.CONN_LIMIT).toBeUndefined();
  });

  test("--masq-local / NO_MASQ_LOCAL: env NO_MASQ_LOCAL, 1 by default", async () => {
    expect((await dryRun({})).env.NO_MASQ_LOCAL).toBe("1");
    expect((await dryRun({ masqLocal: true })).env.NO_MASQ_LOCAL).toBe("0");
    expect((await dryRun({}, { NO_MASQ_LOCAL: "false" })).env.NO_MASQ_LOCAL).toBe("0");
  });

  test("--extra-args / EXTRA_ARGS: env EXTRA_ARGS, which the agent's command splits into flags", async () => {
    expect((await dryRun({ extraArgs: "--no-discovery --conn-limit 9" })).env.EXTRA_ARGS).toBe(
      "--no-discovery --conn-limit 9",
    );
    expect((await dryRun({}, { EXTRA_ARGS: "--no-discovery" })).env.EXTRA_ARGS).toBe("--no-discovery");
  });

  test("a password secret: the Secret holds the password's bytes, the agent's env takes it by secretKeyRef", () => {
    const bytes = new Uint8Array([0x73, 0x33, 0x00, 0xff, 0x0a, 0x63]); // any bytes, a NUL and a newline too
    const s = manifestSettings({ passwordSecret: { name: "weave-passwd", password: bytes } });
    const secret = renderManifests(s).find((o) => o.kind === "Secret") as { data: Record<string, string> };
    expect(secret).toMatchObject({ metadata: { name: "weave-passwd", namespace: "kube-system" }, type: "Opaque" });
    expect(new Uint8Array(Buffer.from(secret.data["weave-password"]!, "base64"))).toEqual(bytes);
    expect(envOf(agent(ds(s))).WEAVE_PASSWORD).toEqual({
      secretKeyRef: { name: "weave-passwd", key: "weave-password" },
    });
    expect(renderManifests(s).find((o) => o.kind === "ConfigMap")).toMatchObject({
      data: { "password-secret": "weave-passwd" },
    });
    expect(renderManifests(manifestSettings()).some((o) => o.kind === "Secret")).toBe(false);
  });

  /** --dry-run's stdout and stderr with a password in the installer's environment or a file. */
  async function dryRunWithPassword(flags: Record<string, unknown>, env: Record<string, string>, format = "yaml") {
    const r = { out: "", logs: [] as string[] };
    await run(
      { dryRun: true, output: format, kubeconfig: "/nonexistent/kubeconfig", ...flags },
      {
        env,
        out: (t) => {
          r.out += t;
        },
        log: (l) => void r.logs.push(l),
      },
    );
    return r;
  }

  test("--password-secret: the password from WEAVE_PASSWORD or --password-file; --dry-run and -o never print it", async () => {
    const secret = "correct-horse-battery-staple-7f3a";
    const b64 = Buffer.from(secret).toString("base64");
    for (const format of ["yaml", "json"]) {
      const r = await dryRunWithPassword({ passwordSecret: "weave-passwd" }, { WEAVE_PASSWORD: secret }, format);
      const all = r.out + r.logs.join("\n");
      expect(all).not.toContain(secret);
      expect(all).not.toContain(b64);
      const objs = format === "json" ? JSON.parse(r.out).items : parseAllDocuments(r.out).map((d) => d.toJS());
      const s = objs.find((o: KubernetesObject) => o.kind === "Secret");
      expect(s.metadata).toMatchObject({ name: "weave-passwd", namespace: "kube-system" });
      expect(s.data).toBeUndefined();
      expect(s.stringData).toBeUndefined();
      expect(r.logs.join("\n")).toContain("data left out: weave install never prints the password");
      const d = objs.find((o: KubernetesObject) => o.kind === "DaemonSet") as V1DaemonSet;
      expect(envOf(agent(d)).WEAVE_PASSWORD).toEqual({ secretKeyRef: { name: "weave-passwd", key: "weave-password" } });
    }
    const yaml = (await dryRunWithPassword({ passwordSecret: "weave-passwd" }, { WEAVE_PASSWORD: secret })).out;
    expect(yaml).toContain("# data left out: weave install never prints the password (key weave-password)");

    const dir = mkdtempSync(join(tmpdir(), "weave-pw-"));
    try {
      const file = join(dir, "password");
      writeFileSync(file, `${secret}\n`, { mode: 0o600 });
      const r = await dryRunWithPassword({ passwordSecret: "weave-passwd", passwordFile: file }, {});
      expect(r.out + r.logs.join("\n")).not.toContain(secret);
      expect(r.out).toContain("kind: Secret");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--password-secret refusals: no password, a bad name, a password without a Secret name", async () => {
    const refused = (flags: Record<string, unknown>, env: Record<string, string> = {}) =>
      run({ dryRun: true, ...flags }, { env, out: () => {}, log: () => {} }).then(
        () => "accepted",
        (e: WeaveError) => `${e.code} ${e.message}`,
      );
    expect(await refused({ passwordSecret: "weave-passwd" })).toStartWith(
      "E_BAD_PASSWORD --password-secret weave-passwd needs the password: put it in WEAVE_PASSWORD or in a file given as --password-file FILE",
    );
    expect(await refused({ passwordSecret: "weave-passwd" }, { WEAVE_PASSWORD: "" })).toStartWith(
      "E_BAD_PASSWORD WEAVE_PASSWORD is empty",
    );
    expect(await refused({ passwordSecret: "Weave_Passwd" }, { WEAVE_PASSWORD: "x" })).toStartWith(
      'E_BAD_FLAG --password-secret "Weave_Passwd" is not a Secret name',
    );
    expect(await refused({ passwordSecret: true }, { WEAVE_PASSWORD: "x" })).toStartWith(
      "E_BAD_FLAG --password-secret true needs a value",
    );
    expect(await refused({}, { WEAVE_PASSWORD: "x" })).toStartWith(
      "E_BAD_FLAG WEAVE_PASSWORD is set but --password-secret NAME is not",
    );
    expect(await refused({ passwordFile: "/nonexistent/pw" })).toStartWith(
      "E_BAD_FLAG --password-file needs --password-secret NAME",
    );
    expect(await refused({ passwordSecret: "weave-passwd", passwordFile: "/nonexistent/pw" })).toStartWith(
      'E_BAD_PASSWORD --password-file "/nonexistent/pw": cannot read it (ENOENT)',
    );
  });

  test("-o json prints one List; --dry-run alone prints YAML", async () => {
    expect((await dryRun({}, {}, "json")).objs).toHaveLength(7);
    let out = "";
    await run(
      { dryRun: true },
      {
        env: {},
        out: (t) => {
          out += t;
        },
        log: () => {},
      },
    );
    expect(parseAllDocuments(out)).toHaveLength(7);
  });

  test("bad values are refused naming the flag or variable and the value", () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as WeaveError).code} ${(e as Error).message}`;
      }
      return "accepted";
    };
    expect(code(() => settingsFrom({ ipallocRange: "10.32.0.1/12" }, {}))).toBe(
      'E_BAD_RANGE --ipalloc-range "10.32.0.1/12" has host bits set (the range would be 10.32.0.0/12)',
    );
    expect(code(() => settingsFrom({}, { IPALLOC_RANGE: "10.0.0.0/31" }))).toBe(
      'E_BAD_FLAG IPALLOC_RANGE "10.0.0.0/31" is too small (at most /30)',
    );
    expect(code(() => settingsFrom({ mtu: "big" }, {}))).toBe(
      'E_BAD_FLAG --mtu "big" is not an integer from 576 to 65535',
    );
    expect(code(() => settingsFrom({}, { CONN_LIMIT: "-1" }))).toBe(
      'E_BAD_FLAG CONN_LIMIT "-1" is not an integer from 0 to 100000',
    );
    expect(code(() => settingsFrom({}, { NO_MASQ_LOCAL: "maybe" }))).toBe(
      'E_BAD_FLAG NO_MASQ_LOCAL "maybe" is not one of 1/true/yes/on or 0/false/no/off',
    );
    expect(code(() => settingsFrom({ image: "bad image" }, {}))).toStartWith(
      'E_BAD_FLAG --image "bad image" is not an image reference',
    );
    expect(code(() => settingsFrom({ extraArgs: true }, {}))).toBe("E_BAD_FLAG --extra-args true needs a value");
    expect(code(() => settingsFrom({}, {}))).toBe("accepted");
  });
});
