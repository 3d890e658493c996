/**
 * The running server: Bun.serve over plain http (127.0.0.1 and an ephemeral port unless
 * told otherwise), a kubeconfig for it, down/up to simulate an outage, and more
 * listeners on demand (`listen`, synchronous, so the lab can open one while its thread
 * is switched into another network namespace). Websocket upgrades go to the exec
 * protocol (exec.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import type { Server as BunServer, WebSocketHandler } from "bun";
import { ApiError } from "./errors.ts";
import { execClose, execMessage, type ExecSession, openExec, prepareExec } from "./exec.ts";
import { Handler } from "./handler.ts";
import type { Doc } from "./json.ts";
import type { PodRuntime } from "./pod-runtime.ts";
import { findDef } from "./resources.ts";
import { segmentsOf, target } from "./routes.ts";
import { KUBERNETES_SERVICE_IP } from "./service-ips.ts";
import { Store } from "./store.ts";

type Server = BunServer<unknown>;

/** One request the server answered. */
export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  contentType: string | null;
}

/** Options of the server. */
export interface ApiServerOptions {
  /** Namespaces that exist at start (default: default, kube-system, kube-public, kube-node-lease). */
  namespaces?: string[];
  /** Address to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Port to listen on (default 0: an ephemeral port, kept across down/up). */
  port?: number;
  /** The lab kubelet's logs and exec; without it, logs and exec answer that no kubelet serves them. */
  pods?: PodRuntime;
  /**
   * Create the `kubernetes` Service in `default` (10.96.0.1:443) as every cluster has it. Default false for now:
   * a unit test (install.test.ts) needs a cluster without it; the lab should pass true.
   */
  kubernetesService?: boolean;
  /** DELETE of a Pod bound to a node marks it (deletionTimestamp) for the kubelet to finish; default: immediate. */
  gracefulPodDeletion?: boolean;
}

/** The fetch and websocket handlers, for a `Bun.serve` of one's own. */
export interface ServeHandlers {
  fetch: (req: Request, server: Server) => Promise<Response | undefined>;
  websocket: WebSocketHandler<unknown>;
}

/** An extra listener: where it listens, and how to stop it. */
export interface Listener {
  hostname: string;
  port: number;
  stop(): void;
}

/** The running server: its address, kubeconfig, store and controls. */
export interface ApiServer {
  url: string;
  port: number;
  /** A kubeconfig file for the server (a temp file, removed by `stop()`). */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  store: Store;
  requests: RequestRecord[];
  /** What Bun.serve needs to serve this API on a socket of one's own. */
  handlers: ServeHandlers;
  /** Whether the main listener is answering. */
  readonly isUp: boolean;
  /** Another listener (synchronous: opened on the calling thread's network namespace). */
  listen(hostname: string, port?: number): Listener;
  /** Stops answering on the main listener: open watches and log streams end, new connections are refused. */
  down(): Promise<void>;
  /** Answers again, on the same port, with the same store. */
  up(): Promise<void>;
  /** Down for good (extra listeners too); removes the temp files. */
  stop(): Promise<void>;
}

const DEFAULT_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"];

/** What a cluster has from its first moment: namespaces, their default ServiceAccounts, the `kubernetes` Service. */
function seed(store: Store, handler: Handler, namespaces: string[], kubernetesService: boolean) {
  const nsDef = findDef("v1", "Namespace");
  for (const name of namespaces) {
    const ns: Doc = {
      metadata: { name, labels: { "kubernetes.io/metadata.name": name } },
      spec: { finalizers: ["kubernetes"] },
      status: { phase: "Active" },
    };
    store.create(nsDef, ns, undefined);
    handler.namespaceAdded(name);
  }
  if (!kubernetesService || !namespaces.includes("default")) return;
  store.create(
    findDef("v1", "Service"),
    {
      metadata: {
        name: "kubernetes",
        namespace: "default",
        labels: { component: "apiserver", provider: "kubernetes" },
      },
      spec: {
        type: "ClusterIP",
        clusterIP: KUBERNETES_SERVICE_IP,
        clusterIPs: [KUBERNETES_SERVICE_IP],
        ipFamilies: ["IPv4"],
        ipFamilyPolicy: "SingleStack",
        internalTrafficPolicy: "Cluster",
        sessionAffinity: "None",
        ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: 6443 }],
      },
      status: { loadBalancer: {} },
    },
    "default",
  );
}

type Socket = import("bun").ServerWebSocket<ExecSession>;

/** The websocket handlers: every socket is an exec session. */
const socketHandlers = {
  open: (ws: Socket) => void openExec(ws),
  message: (ws: Socket, m: string | Buffer) => execMessage(ws, m),
  close: (ws: Socket) => execClose(ws),
} as unknown as WebSocketHandler<unknown>;

/** Starts the server (127.0.0.1 and an ephemeral port unless `hostname`/`port` say otherwise). */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const store = new Store();
  const requests: RequestRecord[] = [];
  const streams = new Set<() => void>();
  const handler = new Handler(store, streams, { pods: opts.pods, gracefulPodDeletion: opts.gracefulPodDeletion });
  seed(store, handler, opts.namespaces ?? DEFAULT_NAMESPACES, opts.kubernetesService ?? false);

  const fetch = async (req: Request, srv: Server): Promise<Response | undefined> => {
    const url = new URL(req.url);
    requests.push({
      method: req.method,
      path: url.pathname,
      query: url.search,
      contentType: req.headers.get("content-type"),
    });
    const upgrade = req.headers.get("upgrade")?.toLowerCase() === "websocket";
    if (!upgrade) return handler.handle(req, url);
    const t = target(segmentsOf(url));
    if (t?.sub !== "exec" || !t.name) return handler.handle(req, url);
    try {
      const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
      const session = prepareExec(handler.podFor(t), url.searchParams, offered, opts.pods);
      const headers = { "Sec-WebSocket-Protocol": session.protocol };
      if (srv.upgrade(req, { data: session, headers })) return undefined;
      return new Response("websocket upgrade failed", { status: 400 });
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, "InternalError", (e as Error).message);
      return Response.json(err.toStatus(), { status: err.code });
    }
  };
  const websocket = socketHandlers;
  const handlers: ServeHandlers = { fetch, websocket };

  const hostname = opts.hostname ?? "127.0.0.1";
  const serveOn = (host: string, port: number) =>
    Bun.serve({ hostname: host, port, idleTimeout: 0, fetch, websocket } as Parameters<typeof Bun.serve>[0]);
  let port = opts.port ?? 0;
  let server: Server | undefined = serveOn(hostname, port);
  port = server.port!;
  const extra = new Set<Server>();

  const url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  const dir = mkdtempSync(join(tmpdir(), "weave-k8s-"));
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, kubeconfigYaml(url));
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfigPath);
  const down = async () => {
    for (const close of [...streams]) close();
    await server?.stop(true);
    server = undefined;
  };
  return {
    url,
    port,
    kubeconfigPath,
    kubeConfig,
    store,
    requests,
    handlers,
    get isUp() {
      return server !== undefined;
    },
    listen(host, listenPort = 0) {
      const s = serveOn(host, listenPort);
      extra.add(s);
      return {
        hostname: host,
        port: s.port!,
        stop: () => {
          extra.delete(s);
          s.stop(true);
        },
      };
    },
    down,
    up: async () => {
      server ??= serveOn(hostname, port);
    },
    stop: async () => {
      await down();
      for (const s of extra) s.stop(true);
      extra.clear();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A kubeconfig for a plain-http server (`insecure-skip-tls-verify` is what @kubernetes/client-node needs to allow
 * http). Its context keeps the name `stand-in` that tests select.
 */
export function kubeconfigYaml(server: string, namespace = "default"): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "current-context: stand-in",
    "clusters:",
    "- name: stand-in",
    "  cluster:",
    `    server: ${server}`,
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: tester",
    "  user:",
    "    token: stand-in-token",
    "contexts:",
    "- name: stand-in",
    "  context:",
    "    cluster: stand-in",
    "    user: tester",
    `    namespace: ${namespace}`,
    "",
  ].join("\n");
}
