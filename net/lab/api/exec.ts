/**
 * `kubectl exec` over WebSockets, the remote command protocol kubectl 1.32 speaks first
 * (subprotocol `v5.channel.k8s.io`; `v4.channel.k8s.io` also served; kubectl falls back to
 * SPDY only when the upgrade fails, which this server does not speak). Every binary frame
 * starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error (a v1 Status when the
 * command ends: Success, or Failure `NonZeroExitCode` with the code as cause `ExitCode`,
 * which kubectl turns into its own exit code), 4 resize (ignored), and in v5 255 "close"
 * (`[255, 0]`: stdin is finished). The process is whatever the PodRuntime says; with a tty
 * its stderr goes to stdout (there is no pseudo-terminal).
 */
import type { ServerWebSocket } from "bun";
import { ApiError, badRequest } from "./errors.ts";
import type { Doc } from "./json.ts";
import { containerOf, type ExecSpawn, type PodRuntime } from "./pod-runtime.ts";

export const EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const CLOSE = 255;

/** The socket's state: what to run and, once open, the process. */
export interface ExecSession {
  kind: "exec";
  /** What to run, or why the runtime will not run it (sent as a Failure on the error channel). */
  spawn?: ExecSpawn;
  refusal?: string;
  stdin: boolean;
  tty: boolean;
  protocol: string;
  process?: ReturnType<typeof Bun.spawn>;
  pendingStdin: Uint8Array[];
  stdinClosed: boolean;
}

/** The exit status frame of a finished command. */
export function exitStatus(code: number): Doc {
  if (code === 0) return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success" };
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: exit status ${code}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(code) }] },
  };
}

export function frame(channel: number, data: Uint8Array | string): Uint8Array {
  const body = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const out = new Uint8Array(body.length + 1);
  out[0] = channel;
  out.set(body, 1);
  return out;
}

/** The checks the API makes before an exec reaches a kubelet; throws its error (404, 400). */
export function checkExec(pod: Doc, q: URLSearchParams, runtime: PodRuntime | undefined): string {
  if (q.getAll("command").length === 0) throw badRequest("you must specify at least 1 command");
  const picked = containerOf(pod, q.get("container"));
  if ("error" in picked) throw new ApiError(picked.code, "BadRequest", picked.error);
  if (!pod.spec?.nodeName) throw badRequest(`pod ${pod.metadata.name} does not have a host assigned`);
  if (!runtime) throw new ApiError(500, "InternalError", `no kubelet serves exec for pod ${pod.metadata.name}`);
  return picked.name;
}

/**
 * An exec request as a socket session: the API's checks (thrown), then the runtime's
 * answer. A runtime refusal is not thrown: like a kubelet's, it comes on the error channel.
 */
export function prepareExec(
  pod: Doc,
  q: URLSearchParams,
  offered: string[],
  runtime: PodRuntime | undefined,
): ExecSession {
  const protocol = EXEC_PROTOCOLS.find((p) => offered.includes(p));
  if (!protocol) throw badRequest(`the lab's API server speaks the exec protocols ${EXEC_PROTOCOLS.join(", ")} only`);
  const container = checkExec(pod, q, runtime);
  const flag = (name: string) => q.get(name) === "true" || q.get(name) === "1";
  const request = { command: q.getAll("command"), stdin: flag("stdin"), tty: flag("tty") };
  const spawn = runtime!.exec(pod, container, request);
  const session = {
    kind: "exec" as const,
    stdin: request.stdin,
    tty: request.tty,
    protocol,
    pendingStdin: [],
    stdinClosed: false,
  };
  return "error" in spawn ? { ...session, refusal: spawn.error } : { ...session, spawn };
}

const failure = (message: string) =>
  JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message });

type Socket = ServerWebSocket<ExecSession>;

async function pump(s: ReadableStream<Uint8Array>, ws: Socket, channel: number) {
  for await (const chunk of s) ws.send(frame(channel, chunk));
}

/** Starts the process and streams it (the socket's `open`). */
export async function openExec(ws: Socket): Promise<void> {
  const session = ws.data;
  if (!session.spawn) {
    ws.send(frame(ERROR, failure(session.refusal ?? "the kubelet refused the exec")));
    ws.close(1000);
    return;
  }
  let proc: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>;
  try {
    proc = Bun.spawn(session.spawn.argv, {
      env: session.spawn.env ?? (process.env as Record<string, string>),
      cwd: session.spawn.cwd,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (e) {
    ws.send(
      frame(
        ERROR,
        JSON.stringify({
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message: (e as Error).message,
        }),
      ),
    );
    ws.close(1000);
    return;
  }
  session.process = proc;
  for (const chunk of session.pendingStdin) proc.stdin.write(chunk);
  session.pendingStdin = [];
  if (!session.stdin || session.stdinClosed) proc.stdin.end();
  const errChannel = session.tty ? STDOUT : STDERR;
  await Promise.all([pump(proc.stdout, ws, STDOUT), pump(proc.stderr, ws, errChannel)]);
  const code = await proc.exited;
  ws.send(frame(ERROR, JSON.stringify(exitStatus(code))));
  ws.close(1000);
}

/** A frame from the client (the socket's `message`): stdin data, stdin's end, or a resize. */
export function execMessage(ws: Socket, message: string | Buffer): void {
  const bytes = typeof message === "string" ? new TextEncoder().encode(message) : new Uint8Array(message);
  const session = ws.data;
  const channel = bytes[0];
  const stdinEnds = channel === CLOSE && bytes[1] === STDIN;
  if (channel === STDIN && bytes.length > 1) {
    if (session.process) (session.process.stdin as import("bun").FileSink).write(bytes.subarray(1));
    else session.pendingStdin.push(bytes.slice(1));
  } else if (stdinEnds) {
    session.stdinClosed = true;
    if (session.process) (session.process.stdin as import("bun").FileSink).end();
  }
}

/** The client went away (the socket's `close`): the process goes too. */
export function execClose(ws: Socket): void {
  const proc = ws.data.process;
  if (proc && proc.exitCode === null) proc.kill();
}
