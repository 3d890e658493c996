/**
 * `weave install`: the network on a Kubernetes cluster. With --dry-run or -o it prints
 * the manifests and touches nothing (no kubeconfig is even read); otherwise it checks
 * the pod range against the cluster, server-side applies, and waits for one Ready
 * agent per node (net/k8s/install.ts).
 */
import { VERSION } from "../net/version.ts";
import { WeaveError } from "../net/errors.ts";
import {
  DEFAULT_IMAGE,
  NAMESPACE,
  renderManifests,
  settingsFrom,
  toJson,
  toYaml,
  type SettingFlags,
} from "../manifests/objects.ts";

/** The flags of `weave install` (cac's camelCase names). */
export interface InstallFlags extends SettingFlags {
  kubeconfig?: string;
  context?: string;
  passwordSecret?: unknown;
  serviceCidr?: unknown;
  dryRun?: boolean;
  output?: unknown;
  timeout?: unknown;
}

/** Where install writes, and what it reads settings from (tests pass their own). */
export interface InstallIO {
  env: Record<string, string | undefined>;
  out: (text: string) => void;
  log: (line: string) => void;
  pollMs?: number;
}

const realIO: InstallIO = {
  env: process.env,
  out: (t) => process.stdout.write(t),
  log: (l) => process.stderr.write(`${l}\n`),
};

export async function run(o: InstallFlags, io: InstallIO = realIO): Promise<number> {
  if (o.passwordSecret !== undefined) {
    const why = "encryption does not exist yet, and the agent will not pretend to encrypt";
    const fix =
      "install without it (traffic between nodes is then unencrypted, as with Weave Net without WEAVE_PASSWORD)";
    throw new WeaveError("E_NO_ENCRYPTION", `--password-secret ${JSON.stringify(o.passwordSecret)}: ${why}; ${fix}`);
  }
  const settings = settingsFrom(o, io.env);
  const format = o.output === undefined ? undefined : String(o.output);
  if (format !== undefined && format !== "yaml" && format !== "json")
    throw new WeaveError("E_BAD_FLAG", `-o/--output ${JSON.stringify(o.output)} is not yaml or json`);
  const timeoutS = o.timeout === undefined ? 300 : Number(o.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS < 0)
    throw new WeaveError(
      "E_BAD_FLAG",
      `--timeout ${JSON.stringify(o.timeout)} is not a number of seconds (0: do not wait)`,
    );
  if (o.serviceCidr !== undefined && typeof o.serviceCidr !== "string")
    throw new WeaveError("E_BAD_FLAG", `--service-cidr needs a range (like 10.96.0.0/12)`);

  const objs = renderManifests(settings);
  if (o.dryRun || format !== undefined) {
    io.out(format === "json" ? toJson(objs) : toYaml(objs));
    return 0;
  }

  // Loaded only when talking to a cluster: the client library is big.
  const { loadKubeConfig } = await import("../net/k8s/client.ts");
  const { install } = await import("../net/k8s/install.ts");
  const kubeConfig = loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context, env: io.env });
  const started = Date.now();
  io.log(
    `installing weave ${VERSION} into ${NAMESPACE} on ${kubeConfig.getCurrentCluster()?.server} (context ${kubeConfig.getCurrentContext()})`,
  );
  const progress = await install({
    kubeConfig,
    settings,
    serviceCidr: o.serviceCidr as string | undefined,
    timeoutMs: timeoutS * 1000,
    pollMs: io.pollMs,
    log: io.log,
  });
  const took = ((Date.now() - started) / 1000).toFixed(1);
  const agents = progress
    ? `${progress.ready}/${progress.nodes} agents ready`
    : "not waited for the agents (--timeout 0)";
  const mtu = settings.mtu ?? "per node (underlay - 50)";
  const imageNote =
    settings.image === DEFAULT_IMAGE
      ? " (the default: no registry hosts it; build it from manifests/Dockerfile and pass --image)"
      : "";
  io.out(
    [
      `weave ${VERSION} installed in ${NAMESPACE}: ${agents} (${took} s)`,
      `  pod range ${settings.ipallocRange}, MTU ${mtu}, image ${settings.image}${imageNote}`,
      `  see the agents: kubectl -n ${NAMESPACE} get pods -l name=weave-net -o wide`,
      `  remove it all: weave uninstall`,
      "",
    ].join("\n"),
  );
  return 0;
}
