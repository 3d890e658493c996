/**
 * Which Kubernetes API the agent and the installer talk to. In a pod (the DaemonSet)
 * that is the in-cluster config: the service account token, which the client re-reads
 * as it rotates. Elsewhere a kubeconfig file: the flag, else $KUBECONFIG (a list of
 * files, merged like kubectl does), else ~/.kube/config. A file that is missing, broken
 * or names no cluster is an E_KUBECONFIG error that says which path and why.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { WeaveError } from "../errors.ts";

/** Where the kubelet mounts the service account of a pod. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** What `loadKubeConfig` looks at; env, home and root default to the process's. */
export interface KubeConfigOptions {
  /** A kubeconfig path (the `--kubeconfig` flag); wins over in-cluster and $KUBECONFIG. */
  kubeconfig?: string;
  /** A context of the kubeconfig to use instead of its current-context. */
  context?: string;
  env?: Record<string, string | undefined>;
  home?: string;
  /** Prefix of the service account directory (tests). */
  root?: string;
}

/** Loads the client configuration, in-cluster or from a kubeconfig file. */
export function loadKubeConfig(opts: KubeConfigOptions = {}): KubeConfig {
  const env = opts.env ?? process.env;
  if (!opts.kubeconfig && env.KUBERNETES_SERVICE_HOST) return inCluster(env, opts.root ?? "");
  const files = opts.kubeconfig ? [opts.kubeconfig] : (env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  const paths = files.length ? files : [join(opts.home ?? homedir(), ".kube", "config")];
  const kc = fromFile(paths[0]!);
  for (const p of paths.slice(1)) kc.mergeConfig(fromFile(p), true);
  if (opts.context) {
    if (!kc.getContextObject(opts.context))
      throw new WeaveError(
        "E_KUBECONFIG",
        `kubeconfig ${paths.join(delimiter)}: no context "${opts.context}" (contexts: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(", ") || "none"
        })`,
      );
    kc.setCurrentContext(opts.context);
  }
  if (!kc.getCurrentCluster())
    throw new WeaveError(
      "E_KUBECONFIG",
      `kubeconfig ${paths.join(delimiter)}: context "${kc.getCurrentContext()}" names no cluster`,
    );
  return kc;
}

function fromFile(path: string): KubeConfig {
  if (!existsSync(path))
    throw new WeaveError(
      "E_KUBECONFIG",
      `kubeconfig ${path} does not exist (use --kubeconfig or KUBECONFIG to name one)`,
    );
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (e) {
    throw new WeaveError("E_KUBECONFIG", `kubeconfig ${path} cannot be loaded: ${(e as Error).message}`, { cause: e });
  }
  return kc;
}

/** What `KubeConfig.loadFromCluster` does, from the given env instead of process.env. */
function inCluster(env: Record<string, string | undefined>, root: string): KubeConfig {
  const dir = root + SERVICE_ACCOUNT_DIR;
  const tokenFile = join(dir, "token");
  if (!existsSync(tokenFile))
    throw new WeaveError(
      "E_KUBECONFIG",
      `in-cluster config: no service account token at ${tokenFile} (KUBERNETES_SERVICE_HOST is set; use --kubeconfig outside a pod)`,
    );
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  const scheme = ["80", "8080", "8001"].includes(port) ? "http" : "https";
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(
    {
      name: "inCluster",
      server: `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`,
      caFile: join(dir, "ca.crt"),
      skipTLSVerify: false,
    },
    { name: "inClusterUser", authProvider: { name: "tokenFile", config: { tokenFile } } },
  );
  return kc;
}
