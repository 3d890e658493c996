/**
 * The hooks through which the lab's kubelet serves what only a node can: a container's
 * log file (`kubectl logs`) and the process behind `kubectl exec`. The API server does
 * the API's part (finding the pod and container, the API's errors, the HTTP and
 * websocket protocols); the kubelet only says where the log is and what to run.
 */
import type { Doc } from "./json.ts";

/** What `kubectl logs` asked for. */
export interface LogOptions {
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  tailLines?: number;
  limitBytes?: number;
  sinceSeconds?: number;
}

/** What `kubectl exec` asked for. */
export interface ExecRequest {
  command: string[];
  stdin: boolean;
  tty: boolean;
}

/** A process to run for an exec: its argv, environment and working directory. */
export interface ExecSpawn {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * The lab kubelet's side of logs and exec. Both get the pod as stored and the container's
 * name (already checked to be one of the pod's containers).
 */
export interface PodRuntime {
  /**
   * The log file of a container: plain lines, or CRI lines (`<RFC 3339 time> stdout|stderr
   * F|P <text>`, which give `--timestamps` and `--since` their times). Undefined: there is
   * no log (yet), answered as the API does (`container "c" in pod "p" is waiting to start`).
   */
  logs(pod: Doc, container: string, opts: LogOptions): string | undefined;
  /** What to spawn for an exec, or `{ error }` (answered as a 500 with that message). */
  exec(pod: Doc, container: string, request: ExecRequest): ExecSpawn | { error: string };
}

/** The container a logs/exec request means: the named one, the only one, or the default-container annotation. */
export function containerOf(pod: Doc, asked: string | null): { name: string } | { error: string; code: number } {
  const podName = pod.metadata.name;
  const containers = ((pod.spec?.containers ?? []) as Doc[]).map((c) => c.name as string);
  const all = [...containers, ...((pod.spec?.initContainers ?? []) as Doc[]).map((c) => c.name as string)];
  if (asked)
    return all.includes(asked)
      ? { name: asked }
      : { error: `container ${asked} is not valid for pod ${podName}`, code: 400 };
  const annotated = pod.metadata.annotations?.["kubectl.kubernetes.io/default-container"];
  if (annotated && containers.includes(annotated)) return { name: annotated };
  if (containers.length === 1) return { name: containers[0]! };
  return {
    error: `a container name must be specified for pod ${podName}, choose one of: [${containers.join(" ")}]`,
    code: 400,
  };
}
