/**
 * The DaemonSet `weave-net`: one agent and one policy controller (weave-npc) on every node.
 *
 * Why each host-level choice:
 * - hostNetwork: the agent owns the node's `weave` bridge, VXLAN device and nftables.
 * - hostPID: the CNI plugin (run by the container runtime on the host) hands the agent
 *   a netns path; the agent opens it as /proc/<plugin pid>/root/<path>, which sees
 *   every mount the runtime made, also after the agent started. So /run/netns and
 *   /var/run/netns are not mounted: a hostPath there would need HostToContainer
 *   propagation and would still miss runtimes that keep namespaces elsewhere.
 * - privileged: netlink, nftables, setns and /proc/<pid>/root of another process.
 * - hostPath volumes, narrow on purpose (Weave mounted all of /opt and /etc): the CNI
 *   bin and conf dirs for the init container only, /var/lib/weave for the agent's
 *   state (its peer name included, so a restarted agent is the same peer), and /run/weave
 *   for its root-only socket, where the plugin (on the host) makes its CNI calls. The host's
 *   /etc/machine-id is not mounted: cloned nodes share one, and a name kept in the
 *   data dir needs none.
 * - tolerations for every NoSchedule and NoExecute taint: a node without the network
 *   stays NotReady, so the network must land on tainted nodes too.
 * - the agent runs under `sh -c` only so that EXTRA_ARGS splits into flags, as in Weave.
 * - readiness is GET /status (503 until the agent is ready); liveness is GET /report,
 *   which answers 200 whenever the agent's loop is alive: an agent awaiting consensus
 *   must not be killed for it.
 */
import type { V1Container, V1DaemonSet, V1EnvVar, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { LABELS, meta } from "./rbac.ts";
import { IMAGE_BINARY, NAME, PASSWORD_KEY, type ManifestSettings } from "./settings.ts";

/** Where the init container sees the host's CNI dirs. */
export const HOST_CNI_BIN = "/host/opt/cni/bin";
export const HOST_CNI_CONF = "/host/etc/cni/net.d";
/** The agent's local API (readiness and liveness probes). */
export const AGENT_API = { host: "127.0.0.1", port: 6784 } as const;
/** weave npc's /status and /metrics. */
export const NPC_PORT = 6781;
/** The agent's /metrics (WEAVE_METRICS_ADDR, 0.0.0.0:6782 by default). */
export const METRICS_PORT = 6782;
/**
 * Where Prometheus' Kubernetes discovery (role: pod) finds the metrics: the pod asks to
 * be scraped and names the agent's port; the ports named `metrics` (the agent) and
 * `npc-metrics` (weave npc) give one target each (README: the scrape config).
 */
export const SCRAPE_ANNOTATIONS = {
  "prometheus.io/scrape": "true",
  "prometheus.io/port": String(METRICS_PORT),
  "prometheus.io/path": "/metrics",
} as const;

const nodeNameEnv: V1EnvVar = {
  name: "HOSTNAME",
  valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "spec.nodeName" } },
};

/** The agent's env: Weave's setting names, only those that are set (the agent has the defaults). */
export function agentEnv(s: ManifestSettings): V1EnvVar[] {
  const env: V1EnvVar[] = [
    nodeNameEnv,
    { name: "IPALLOC_RANGE", value: s.ipallocRange },
    { name: "NO_MASQ_LOCAL", value: s.noMasqLocal ? "1" : "0" },
  ];
  if (s.mtu !== undefined) env.push({ name: "WEAVE_MTU", value: String(s.mtu) });
  if (s.connLimit !== undefined) env.push({ name: "CONN_LIMIT", value: String(s.connLimit) });
  if (s.extraArgs !== undefined) env.push({ name: "EXTRA_ARGS", value: s.extraArgs });
  if (s.passwordSecret)
    env.push({
      name: "WEAVE_PASSWORD",
      valueFrom: { secretKeyRef: { name: s.passwordSecret.name, key: PASSWORD_KEY } },
    });
  return env;
}

const hostPath = (name: string, path: string, type: string): V1Volume => ({ name, hostPath: { path, type } });
const mount = (name: string, mountPath: string, readOnly = false): V1VolumeMount => ({
  name,
  mountPath,
  ...(readOnly ? { readOnly } : {}),
});

function initContainer(s: ManifestSettings): V1Container {
  return {
    name: "weave-init",
    image: s.image,
    imagePullPolicy: "IfNotPresent",
    command: [IMAGE_BINARY, "setup-cni", "--bin-dir", HOST_CNI_BIN, "--conf-dir", HOST_CNI_CONF],
    // the node name lets setup-cni put its refusal on the Node as an event
    env: [nodeNameEnv],
    securityContext: { privileged: true },
    resources: { requests: { cpu: "10m", memory: "32Mi" } },
    volumeMounts: [mount("cni-bin", HOST_CNI_BIN), mount("cni-conf", HOST_CNI_CONF)],
  };
}

function agentContainer(s: ManifestSettings): V1Container {
  const probe = (path: string) => ({ httpGet: { host: AGENT_API.host, port: AGENT_API.port, path } });
  return {
    name: "weave",
    image: s.image,
    imagePullPolicy: "IfNotPresent",
    command: ["/bin/sh", "-c", `set -f; exec ${IMAGE_BINARY} agent $EXTRA_ARGS`],
    env: agentEnv(s),
    // Informational on a host-network pod (they open nothing). The sleeve's 6783/udp is
    // left out: a second entry with the same containerPort is merged into the first by
    // tools that key ports by containerPort alone (kubernetes#108255).
    ports: [
      { name: "mesh", containerPort: 6783, protocol: "TCP" },
      { name: "vxlan", containerPort: 6784, protocol: "UDP" },
      { name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" },
    ],
    readinessProbe: { ...probe("/status"), periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 },
    livenessProbe: {
      ...probe("/report"),
      initialDelaySeconds: 30,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 6,
    },
    securityContext: { privileged: true },
    resources: { requests: { cpu: "50m", memory: "100Mi" } },
    volumeMounts: [mount("weavedb", "/var/lib/weave"), mount("weave-run", "/run/weave")],
  };
}

/**
 * weave-npc, the NetworkPolicy controller (`weave npc`), as Weave Net ran it: beside the
 * agent in the same host-network pod, privileged for nftables, NFLOG and the br_netfilter
 * sysctls. Ready once its first full sync is in the kernel (GET /status on :6781, where
 * /metrics is too). It needs no volume: its state is the kernel's table and the API.
 */
function npcContainer(s: ManifestSettings): V1Container {
  const probe = { httpGet: { host: AGENT_API.host, port: NPC_PORT, path: "/status" } };
  return {
    name: "weave-npc",
    image: s.image,
    imagePullPolicy: "IfNotPresent",
    command: [IMAGE_BINARY, "npc"],
    env: [nodeNameEnv],
    ports: [{ name: "npc-metrics", containerPort: NPC_PORT, protocol: "TCP" }],
    readinessProbe: { ...probe, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 },
    securityContext: { privileged: true },
    resources: { requests: { cpu: "10m", memory: "50Mi" } },
  };
}

/** The DaemonSet; see the file note for why each host-level field is there. */
export function daemonSet(s: ManifestSettings): V1DaemonSet {
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: meta(),
    spec: {
      selector: { matchLabels: { name: NAME } },
      minReadySeconds: 5,
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: { labels: { ...LABELS }, annotations: { ...SCRAPE_ANNOTATIONS } },
        spec: {
          serviceAccountName: NAME,
          hostNetwork: true,
          hostPID: true,
          priorityClassName: "system-node-critical",
          tolerations: [
            { operator: "Exists", effect: "NoSchedule" },
            { operator: "Exists", effect: "NoExecute" },
          ],
          initContainers: [initContainer(s)],
          containers: [agentContainer(s), npcContainer(s)],
          volumes: [
            hostPath("cni-bin", "/opt/cni/bin", "DirectoryOrCreate"),
            hostPath("cni-conf", "/etc/cni/net.d", "DirectoryOrCreate"),
            hostPath("weavedb", "/var/lib/weave", "DirectoryOrCreate"),
            hostPath("weave-run", "/run/weave", "DirectoryOrCreate"),
          ],
        },
      },
    },
  };
}
