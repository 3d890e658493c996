/**
 * Watch streams (`?watch=true`): the current objects as ADDED without a resourceVersion,
 * else the history after it, then live events, one JSON object a line; 410 Expired (as
 * an ERROR event) for a resourceVersion older than the kept history; `timeoutSeconds`
 * ends the stream. A stream starts with a blank line, because Bun.serve sends no headers
 * before the first body bytes and a client's watch only returns once it has them.
 * A client that asked for Tables (`kubectl get -w`) gets each object as a one-row Table.
 */
import { ApiError } from "./errors.ts";
import type { Doc } from "./json.ts";
import type { Target } from "./routes.ts";
import type { Match } from "./selectors.ts";
import type { Store, WatchEvent } from "./store.ts";

export function watchResponse(
  store: Store,
  streams: Set<() => void>,
  t: Target,
  match: Match,
  q: URLSearchParams,
  render: (o: Doc) => Doc = (o) => o,
): Response {
  const enc = new TextEncoder();
  const timeout = Number(q.get("timeoutSeconds") ?? 0);
  let cleanup = () => {};
  const body = new ReadableStream<Uint8Array>({
    start: (controller) => {
      const send = (e: WatchEvent) => {
        const object = e.type === "ERROR" ? e.object : render(e.object);
        controller.enqueue(enc.encode(`${JSON.stringify({ type: e.type, object })}\n`));
      };
      controller.enqueue(enc.encode("\n"));
      const since = q.get("resourceVersion") ?? undefined;
      const unsub = store.subscribe({ def: t.def, namespace: t.namespace, match, send }, since);
      if (unsub === "expired") {
        const gone = new ApiError(410, "Expired", `too old resource version: ${since} (${store.resourceVersion})`);
        send({ type: "ERROR", object: gone.toStatus() });
        controller.close();
        return;
      }
      const timer = timeout > 0 ? setTimeout(() => cleanup(), timeout * 1000) : undefined;
      cleanup = () => {
        unsub();
        clearTimeout(timer);
        streams.delete(cleanup);
        try {
          controller.close();
        } catch {
          /* already closed by the client */
        }
      };
      streams.add(cleanup);
    },
    cancel: () => cleanup(),
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}
