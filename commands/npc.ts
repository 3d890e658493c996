/**
 * `weave npc`: the NetworkPolicy controller of one node (the DaemonSet's container
 * weave-npc). It sets br_netfilter's switches, binds the NFLOG group of dropped
 * connections, starts the controller (net/npc/controller.ts) and serves, on
 * --metrics-addr, GET /status (200 once synced, else 503 and why) and GET /metrics.
 * SIGTERM stops it and leaves the rules in the kernel: fail closed.
 */
import { loadKubeConfig } from "../net/k8s/client.ts";
import { WeaveError } from "../net/errors.ts";
import { NflogSocket } from "../net/host/nflog.ts";
import { applyTransaction, ensureBridgeNetfilter, readNpcTable } from "../net/host/npc-kernel.ts";
import { collectGarbageEvery } from "../net/host/process.ts";
import { registerProcessMetrics } from "../net/host/process-metrics.ts";
import { registerNpcMetrics } from "../net/metrics/npc-metrics.ts";
import { Exposition } from "../net/metrics/exposition.ts";
import { NpcController } from "../net/npc/controller.ts";
import { LOG_GROUP } from "../net/policy/names.ts";
import { VERSION } from "../net/version.ts";

export type NpcOptions = { nodeName?: string; kubeconfig?: string; metricsAddr: string; resync?: string | number };

const log = (m: string) => process.stderr.write(`${new Date().toISOString()} weave-npc: ${m}\n`);

export function parseNpcOptions(o: NpcOptions, env: Record<string, string | undefined>) {
  const node = o.nodeName ?? env.HOSTNAME;
  if (!node)
    throw new WeaveError("E_BAD_FLAG", "--node-name is not given and HOSTNAME is not set: which node is this?");
  const m = /^([\d.]+):(\d+)$/.exec(o.metricsAddr);
  if (!m || Number(m[2]) > 65535)
    throw new WeaveError("E_BAD_FLAG", `--metrics-addr "${o.metricsAddr}" is not ip:port`);
  const resync = Number(o.resync ?? 30);
  if (!Number.isFinite(resync) || resync < 1 || resync > 3600)
    throw new WeaveError("E_BAD_FLAG", `--resync "${o.resync}" is not a number of seconds from 1 to 3600`);
  return { node, http: { hostname: m[1]!, port: Number(m[2]) }, resyncMs: resync * 1000 };
}

export async function run(o: NpcOptions): Promise<number> {
  const s = parseNpcOptions(o, process.env);
  const kubeConfig = loadKubeConfig({ kubeconfig: o.kubeconfig });
  for (const key of ensureBridgeNetfilter()) log(`set ${key}=1 (bridged pod traffic must meet the forward hook)`);
  let nflog: NflogSocket | undefined;
  try {
    nflog = new NflogSocket(LOG_GROUP);
  } catch (e) {
    log(`dropped connections will not be logged: ${(e as Error).message}`);
  }
  const controller = new NpcController({
    node: s.node,
    kubeConfig,
    kernel: { read: readNpcTable, apply: applyTransaction },
    log,
    drops: nflog,
    resyncMs: s.resyncMs,
  });
  const exp = new Exposition();
  registerProcessMetrics(exp.registries);
  exp.define((registers) => registerNpcMetrics(registers, controller, nflog));
  const server = Bun.serve({
    hostname: s.http.hostname,
    port: s.http.port,
    fetch: (req) => {
      // an HTTP/1.0 request without Host has no absolute URL: take the path as sent
      const path = req.url.replace(/^[a-z]+:\/\/[^/]*/, "").split("?")[0];
      if (path === "/status") return new Response(`${controller.status}\n`, { status: controller.synced ? 200 : 503 });
      if (path === "/metrics") return exp.handle(req);
      return new Response("not found\n", { status: 404 });
    },
  });
  log(`weave npc ${VERSION} on node ${s.node}; /status and /metrics on ${s.http.hostname}:${s.http.port}`);
  controller.start();
  const stopGc = collectGarbageEvery();
  return await new Promise<number>((resolve) => {
    const stop = async (sig: string) => {
      log(`${sig}: stopping; the rules stay in the kernel`);
      stopGc();
      await controller.stop();
      server.stop(true);
      nflog?.close();
      resolve(0);
    };
    process.once("SIGTERM", () => void stop("SIGTERM"));
    process.once("SIGINT", () => void stop("SIGINT"));
  });
}
