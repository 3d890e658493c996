/**
 * `GET .../pods/NAME/log`: a container's log as text/plain, from the file the PodRuntime
 * names. Options as the API takes them: `tailLines`, `limitBytes`, `timestamps`,
 * `sinceSeconds`, `previous`, and `follow`, which keeps the response open and sends new
 * lines as the file grows until the client goes away, the pod is deleted or the server
 * stops. CRI-format lines are shown as their text (with their time for `timestamps`).
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { ApiError, badRequest } from "./errors.ts";
import type { Doc } from "./json.ts";
import { containerOf, type LogOptions, type PodRuntime } from "./pod-runtime.ts";

const CRI_LINE = /^(\d{4}-\d\d-\d\dT\S+) (stdout|stderr) ([FP]) (.*)$/;

/** One log line as the client sees it (`timestamps` adds the time a CRI line carries). */
export function renderLine(line: string, opts: LogOptions): { text: string; time?: number } {
  const cri = CRI_LINE.exec(line);
  if (!cri) return { text: line };
  const time = Date.parse(cri[1]!);
  return { text: opts.timestamps ? `${cri[1]} ${cri[4]}` : cri[4]!, time };
}

/** The lines of a log text that the options keep. */
export function selectLines(text: string, opts: LogOptions, now = Date.now()): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  let out = lines.map((l) => renderLine(l, opts));
  if (opts.sinceSeconds !== undefined) {
    const from = now - opts.sinceSeconds * 1000;
    out = out.filter((l) => l.time === undefined || l.time >= from);
  }
  if (opts.tailLines !== undefined) out = opts.tailLines === 0 ? [] : out.slice(-opts.tailLines);
  return out.map((l) => l.text);
}

const intParam = (q: URLSearchParams, name: string): number | undefined => {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`${name}: Invalid value: "${v}": must be a non-negative integer`);
  return n;
};

export function logOptionsOf(q: URLSearchParams): LogOptions {
  const flag = (name: string) => q.get(name) === "true" || q.get(name) === "1";
  return {
    follow: flag("follow"),
    previous: flag("previous"),
    timestamps: flag("timestamps"),
    tailLines: intParam(q, "tailLines"),
    limitBytes: intParam(q, "limitBytes"),
    sinceSeconds: intParam(q, "sinceSeconds"),
  };
}

/** How the log request follows the world: is the pod still there, is the server still up. */
export interface LogContext {
  podExists(): boolean;
  /** Registers a close function called when the server goes down; returns its unregistration. */
  onShutdown(close: () => void): () => void;
}

const readFrom = (path: string, offset: number): { text: string; size: number } => {
  const size = statSync(path).size;
  if (size <= offset) return { text: "", size: Math.max(size, 0) };
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    return { text: buf.toString("utf8"), size };
  } finally {
    closeSync(fd);
  }
};

/** The response of a log request. */
export function podLogs(
  pod: Doc,
  q: URLSearchParams,
  runtime: PodRuntime | undefined,
  ctx: LogContext,
  signal: AbortSignal,
): Response {
  const podName = pod.metadata.name;
  const picked = containerOf(pod, q.get("container"));
  if ("error" in picked) throw new ApiError(picked.code, "BadRequest", picked.error);
  const opts = logOptionsOf(q);
  if (!pod.spec?.nodeName) throw badRequest(`pod ${podName} does not have a host assigned`);
  const path = runtime?.logs(pod, picked.name, opts);
  if (!path) {
    const why = opts.previous
      ? `previous terminated container "${picked.name}" in pod "${podName}" not found`
      : `container "${picked.name}" in pod "${podName}" is waiting to start: ContainerCreating`;
    throw badRequest(why);
  }
  const first = readFrom(path, 0);
  const firstText = selectLines(first.text, opts)
    .map((l) => `${l}\n`)
    .join("");
  const limited = opts.limitBytes !== undefined ? firstText.slice(0, opts.limitBytes) : firstText;
  const headers = { "content-type": "text/plain" };
  if (!opts.follow) return new Response(limited, { headers });
  const enc = new TextEncoder();
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(enc.encode(limited || "\n".slice(1)));
      let offset = first.size;
      let partial = "";
      const timer = setInterval(() => {
        if (!ctx.podExists()) return stop();
        try {
          const next = readFrom(path, offset);
          offset = next.size;
          const text = partial + next.text;
          const cut = text.lastIndexOf("\n");
          partial = cut < 0 ? text : text.slice(cut + 1);
          const complete = cut < 0 ? "" : text.slice(0, cut + 1);
          const lines = selectLines(complete, { ...opts, tailLines: undefined, sinceSeconds: undefined });
          if (lines.length) controller.enqueue(enc.encode(lines.map((l) => `${l}\n`).join("")));
        } catch {
          stop();
        }
      }, 100);
      const unregister = ctx.onShutdown(() => stop());
      stop = () => {
        clearInterval(timer);
        unregister();
        try {
          controller.close();
        } catch {
          /* already closed */
        }
      };
      signal.addEventListener("abort", () => stop());
    },
    cancel: () => stop(),
  });
  return new Response(body, { headers });
}
