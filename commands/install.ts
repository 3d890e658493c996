/**
 * `weave install`: the network on a Kubernetes cluster. With --dry-run or -o it prints
 * the manifests and touches nothing (no kubeconfig is even read); otherwise it checks
 * the pod range against the cluster, server-side applies, and waits for one Ready
 * agent per node (net/k8s/install.ts).
 *
 * Encryption: `--password-secret NAME` renders the Secret NAME (key weave-password) and
 * the agents' WEAVE_PASSWORD from it (secretKeyRef). The password itself comes from the
 * installer's WEAVE_PASSWORD or `--password-file FILE`, never a flag's value (command
 * lines are world-readable in /proc), and is never printed: --dry-run and -o leave the
 * Secret's data out and say so.
 */
import { VERSION } from "../net/version.ts";
import { WeaveError } from "../net/errors.ts";
import {
  DEFAULT_IMAGE,
  NAMESPACE,
  PASSWORD_KEY,
  REDACTED_NOTE,
  redactSecrets,
  renderManifests,
  secretName,
  settingsFrom,
  toJson,
  toYaml,
  type ManifestSettings,
  type SettingFlags,
} from "../manifests/objects.ts";
import { readPassword } from "./agent.ts";

/** The flags of `weave install` (cac's camelCase names). */
export interface InstallFlags extends SettingFlags {
  kubeconfig?: string;
  context?: string;
  passwordSecret?: unknown;
  passwordFile?: unknown;
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

/**
 * `--password-secret NAME` with its password (WEAVE_PASSWORD or --password-file, read as
 * the agent reads it), or nothing. A password without a Secret name is refused rather
 * than dropped: someone who set WEAVE_PASSWORD expects encryption.
 */
export function passwordSetting(
  o: Pick<InstallFlags, "passwordSecret" | "passwordFile">,
  env: Record<string, string | undefined>,
): ManifestSettings["passwordSecret"] {
  const file = o.passwordFile;
  if (file !== undefined && typeof file !== "string")
    throw new WeaveError("E_BAD_FLAG", "--password-file needs the path of a file holding the password");
  if (o.passwordSecret === undefined) {
    if (file !== undefined)
      throw new WeaveError(
        "E_BAD_FLAG",
        "--password-file needs --password-secret NAME: the Secret the agents read the password from",
      );
    if (env.WEAVE_PASSWORD !== undefined)
      throw new WeaveError(
        "E_BAD_FLAG",
        "WEAVE_PASSWORD is set but --password-secret NAME is not: give the Secret's name to install with encryption " +
          "(weave install --password-secret weave-passwd), or unset WEAVE_PASSWORD to install without it",
      );
    return undefined;
  }
  const name = secretName(o.passwordSecret);
  const password = readPassword({ passwordFile: file }, env);
  if (!password)
    throw new WeaveError(
      "E_BAD_PASSWORD",
      `--password-secret ${name} needs the password: put it in WEAVE_PASSWORD or in a file given as --password-file FILE ` +
        "(never on the command line)",
    );
  return { name, password: password.bytes };
}

export async function run(o: InstallFlags, io: InstallIO = realIO): Promise<number> {
  const passwordSecret = passwordSetting(o, io.env);
  const settings: ManifestSettings = { ...settingsFrom(o, io.env), ...(passwordSecret ? { passwordSecret } : {}) };
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
    const shown = redactSecrets(objs);
    io.out(format === "json" ? toJson(shown) : toYaml(shown));
    if (passwordSecret)
      io.log(
        `Secret ${NAMESPACE}/${passwordSecret.name}: ${REDACTED_NOTE}. Applied as printed it holds no key and the ` +
          `agents do not start; give it the password first: kubectl -n ${NAMESPACE} create secret generic ` +
          `${passwordSecret.name} --from-file=${PASSWORD_KEY}=FILE`,
      );
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
  const mtu =
    settings.mtu ?? (passwordSecret ? "per node (underlay - 110: VXLAN inside WireGuard)" : "per node (underlay - 50)");
  const imageNote =
    settings.image === DEFAULT_IMAGE
      ? " (the default: no registry hosts it; build it from manifests/Dockerfile and pass --image)"
      : "";
  io.out(
    [
      `weave ${VERSION} installed in ${NAMESPACE}: ${agents} (${took} s)`,
      `  pod range ${settings.ipallocRange}, MTU ${mtu}, image ${settings.image}${imageNote}`,
      passwordSecret
        ? `  encryption on: the agents' WEAVE_PASSWORD comes from Secret ${NAMESPACE}/${passwordSecret.name} (key ${PASSWORD_KEY})`
        : "  encryption off (no --password-secret): traffic between nodes is not encrypted",
      `  see the agents: kubectl -n ${NAMESPACE} get pods -l name=weave-net -o wide`,
      `  remove it all: weave uninstall`,
      "",
    ].join("\n"),
  );
  return 0;
}
