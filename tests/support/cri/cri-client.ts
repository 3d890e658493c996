/**
 * A CRI client, the part of kubelet that talks to the runtime: gRPC over the runtime's unix
 * socket, service `runtime.v1.RuntimeService`, with the few messages in runtime-v1.proto
 * (written from the CRI API's field numbers; no generated code, nothing fetched).
 *
 * @grpc/grpc-js does the HTTP/2 and @grpc/proto-loader turns the .proto into a client at
 * run time; both are pure JavaScript and work under Bun over a `unix:` address. Fields
 * come back in camelCase (proto-loader's default), enums as their names, int64 as strings.
 * Every call has a deadline, so a wedged runtime fails the test instead of hanging it.
 */
import {
  credentials,
  loadPackageDefinition,
  Metadata,
  type Client,
  type ServiceClientConstructor,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { join } from "node:path";

const PROTO = join(import.meta.dir, "runtime-v1.proto");

export type NamespaceMode = "POD" | "CONTAINER" | "NODE" | "TARGET";
export type SandboxState = "SANDBOX_READY" | "SANDBOX_NOTREADY";

export type PodSandboxMetadata = { name: string; uid: string; namespace: string; attempt: number };

export type PodSandboxConfig = {
  metadata: PodSandboxMetadata;
  hostname: string;
  logDirectory: string;
  dnsConfig?: { servers: string[]; searches: string[]; options: string[] };
  portMappings?: { protocol: "TCP" | "UDP" | "SCTP"; containerPort: number; hostPort: number; hostIp?: string }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: {
    cgroupParent?: string;
    securityContext?: {
      namespaceOptions?: { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode };
      privileged?: boolean;
    };
    sysctls?: Record<string, string>;
  };
};

export type PodSandboxStatus = {
  id: string;
  metadata: PodSandboxMetadata;
  state: SandboxState;
  createdAt: string;
  network: { ip: string; additionalIps: { ip: string }[] } | null;
  linux: { namespaces: { options: { network: NamespaceMode } | null } | null } | null;
  labels: Record<string, string>;
};

export type PodSandbox = {
  id: string;
  metadata: PodSandboxMetadata;
  state: SandboxState;
  labels: Record<string, string>;
};

/**
 * containerd's own record of a sandbox, the JSON in a verbose PodSandboxStatus's info.info
 * (containerd 1.6 pkg/cri/server SandboxInfo; only the fields the test reads).
 */
export type ContainerdSandboxInfo = {
  pid: number;
  netNamespaceClosed: boolean;
  runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
  /** go-cni's result: per interface name, its addresses. */
  cniResult?: { Interfaces?: Record<string, { IPConfigs?: { IP: string; Gateway: string }[] | null }> };
};

export type RuntimeCondition = { type: string; status: boolean; reason: string; message: string };

export type VersionResponse = {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
};

/** A failed call: the gRPC status code (5 NOT_FOUND, 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE, ...) and the runtime's message. */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super(`CRI ${method} failed: code ${code}: ${details}`, options);
    this.name = "CriError";
  }
}

type Unary = (
  req: object,
  meta: Metadata,
  opts: { deadline: Date },
  cb: (e: ServiceError | null, r: unknown) => void,
) => void;

export class CriClient {
  private readonly client: Client & Record<string, Unary>;

  /** `socket` is the runtime's unix socket path; `timeoutMs` bounds every call. */
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 60_000,
  ) {
    const def = loadSync(PROTO, { longs: String, enums: String, defaults: true, oneofs: true });
    const pkg = loadPackageDefinition(def) as unknown as {
      runtime: { v1: { RuntimeService: ServiceClientConstructor } };
    };
    const Service = pkg.runtime.v1.RuntimeService;
    this.client = new Service(`unix:${socket}`, credentials.createInsecure()) as unknown as Client &
      Record<string, Unary>;
  }

  private call<T>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.timeoutMs);
      this.client[method]!.call(this.client, req, new Metadata(), { deadline }, (e, r) => {
        if (e) reject(new CriError(method, e.code, e.details, { cause: e }));
        else resolve(r as T);
      });
    });
  }

  version(): Promise<VersionResponse> {
    return this.call("Version", { version: "v1" });
  }

  /**
   * The runtime's conditions (kubelet waits for RuntimeReady and NetworkReady, which
   * containerd sets once a CNI config loaded) and, verbose, its info: containerd puts the
   * loaded CNI config under "cniconfig" and the last load's outcome under "lastCNILoadStatus".
   */
  async status(): Promise<{ conditions: RuntimeCondition[]; info: Record<string, string> }> {
    const r = await this.call<{ status: { conditions: RuntimeCondition[] } | null; info: Record<string, string> }>(
      "Status",
      { verbose: true },
    );
    return { conditions: r.status?.conditions ?? [], info: r.info };
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ podSandboxId: string }>("RunPodSandbox", { config });
    return r.podSandboxId;
  }

  stopPodSandbox(id: string): Promise<void> {
    return this.call("StopPodSandbox", { podSandboxId: id });
  }

  removePodSandbox(id: string): Promise<void> {
    return this.call("RemovePodSandbox", { podSandboxId: id });
  }

  /** Status with verbose info: containerd puts its sandbox record (JSON) under info.info. */
  async podSandboxStatus(id: string): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    return this.call("PodSandboxStatus", { podSandboxId: id, verbose: true });
  }

  async listPodSandbox(labels: Record<string, string> = {}): Promise<PodSandbox[]> {
    const r = await this.call<{ items: PodSandbox[] }>("ListPodSandbox", { filter: { labelSelector: labels } });
    return r.items;
  }

  close(): void {
    this.client.close();
  }
}
