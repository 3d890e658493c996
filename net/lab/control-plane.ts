/**
 * The lab's control plane: one process (`weave lab serve`, started by `lab up`) that runs
 * the lab's API server, its scheduler, its kubelet and its controllers for the whole lab.
 *
 * - The API server answers kubectl on this machine at 127.0.0.1:<ephemeral port> (the
 *   kubeconfig /run/weave-lab/<name>/kubeconfig) and the agents inside the node
 *   namespaces at 198.18.0.1:6443 on the underlay: a listener made inside the underlay
 *   namespace forwards each connection to the first, byte for byte (so watches, apply and
 *   exec's websocket cross it unchanged), and the agents run with a kubeconfig naming it.
 * - At start it holds what `weave install` would have applied (RBAC, the weave-net
 *   ConfigMap and DaemonSet, from the same manifests) and the namespaces a cluster
 *   starts with; the controllers (controllers.ts) and the kubelet (kubelet.ts) keep the
 *   rest true to the lab.
 * The API server is a lab fixture that follows the Kubernetes API's conventions, not a
 * Kubernetes (api-server.ts says what it models). Its objects live in memory: they go
 * with this process, which `lab down` stops.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { manifestSettings } from "../../manifests/settings.ts";
import { renderManifests } from "../../manifests/objects.ts";
import { inNetns, netnsPath } from "../host/netns.ts";
import { type ApiServer, startApiServer } from "./api-server.ts";
import { LabControllers } from "./controllers.ts";
import { LabKubelet } from "./kubelet.ts";
import { labPodRuntime } from "./pod-runtime.ts";
import { schedulePending } from "./scheduler.ts";
import type { LabTools } from "./plugin.ts";
import { API_IP, API_PORT, labDir, mustReadLab, updateLab } from "./state.ts";

export function kubeconfigPath(lab: string): string {
  return join(labDir(lab), "kubeconfig");
}

/** A kubeconfig for the lab (plain http: `insecure-skip-tls-verify` lets @kubernetes/client-node use it). */
export function labKubeconfig(lab: string, server: string): string {
  const context = `weave-lab-${lab}`;
  return [
    "apiVersion: v1",
    "kind: Config",
    `current-context: ${context}`,
    "clusters:",
    `- name: ${context}`,
    "  cluster:",
    `    server: ${server}`,
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: admin",
    "  user:",
    "    token: weave-lab",
    "contexts:",
    `- name: ${context}`,
    "  context:",
    `    cluster: ${context}`,
    "    user: admin",
    "    namespace: default",
    "",
  ].join("\n");
}

/** Forward TCP connections made to `hostname:port` inside `netns` to 127.0.0.1:`target` here. */
function forwardInto(netns: string, hostname: string, port: number, target: number) {
  type Side = { peer?: import("bun").Socket<Side>; pending: Uint8Array[] };
  const relay = (from: import("bun").Socket<Side>, data: Uint8Array) => {
    const to = from.data.peer;
    if (to) to.write(data);
    else from.data.pending.push(new Uint8Array(data));
  };
  const close = (s: import("bun").Socket<Side>) => {
    s.data.peer?.end();
  };
  return inNetns(netns, () =>
    Bun.listen<Side>({
      hostname,
      port,
      data: { pending: [] },
      socket: {
        open(inbound) {
          inbound.data = { pending: [] };
          Bun.connect<Side>({
            hostname: "127.0.0.1",
            port: target,
            data: { peer: inbound, pending: [] },
            socket: { data: relay, close, error: close, connectError: close },
          }).then(
            (outbound) => {
              inbound.data.peer = outbound;
              for (const chunk of inbound.data.pending.splice(0)) outbound.write(chunk);
            },
            () => {
              inbound.end();
            },
          );
        },
        data: relay,
        close,
        error: close,
      },
    }),
  );
}

/** `weave lab serve`: runs until SIGTERM or SIGINT. */
export async function serveLab(lab: string, tools: LabTools): Promise<void> {
  const s = mustReadLab(lab);
  const log = (line: string) => console.error(`${new Date().toISOString()} control-plane: ${line}`);
  let kubelet: LabKubelet | undefined;
  const pods = labPodRuntime(lab, tools, (namespace, name) => kubelet?.netnsOf(namespace, name));
  const api: ApiServer = await startApiServer({ gracefulPodDeletion: true, kubernetesService: true, pods });
  const settings = manifestSettings(s.ipallocRange ? { ipallocRange: s.ipallocRange } : {});
  for (const o of renderManifests(settings)) api.store.put(o as Record<string, unknown>);
  const underlay = forwardInto(netnsPath(s.underlay), API_IP, API_PORT, api.port);
  const nodeUrl = `http://${API_IP}:${API_PORT}`;
  const nodeKubeconfig = join(labDir(lab), "node-kubeconfig");
  writeFileSync(nodeKubeconfig, labKubeconfig(lab, nodeUrl));
  writeFileSync(kubeconfigPath(lab), labKubeconfig(lab, api.url));

  kubelet = new LabKubelet(lab, tools, api.store, log);
  kubelet.start();
  const controllers = new LabControllers(lab, api.store, log);
  await controllers.sync();
  controllers.start();
  const scheduler = setInterval(() => schedulePending(lab, api.store, log), 200);
  updateLab(lab, (state) => {
    state.kubeconfig = kubeconfigPath(lab);
    state.controlPlane = { pid: process.pid, url: api.url, nodeUrl, nodeKubeconfig };
  });
  log(`API server at ${api.url} (kubectl) and ${nodeUrl} (the nodes)`);

  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  log("stopping");
  clearInterval(scheduler);
  controllers.stop();
  kubelet.stop();
  underlay.stop(true);
  await api.stop();
}
