/**
 * A plain HTTP/1.0 GET from inside a network namespace, without a process: the socket is
 * created while this thread is switched into the namespace (inNetns) and stays there,
 * then everything else runs back in our own. What a kubelet's httpGet probe does on a
 * hostNetwork pod: the lab's control plane probes each node's agent at 127.0.0.1:6784.
 */
import { inNetns } from "./netns.ts";

export type HttpAnswer = { status: number; body: string } | { error: string };

export function httpGetInNetns(netns: string, port: number, path: string, timeoutMs = 1000): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const chunks: string[] = [];
    let settled = false;
    const finish = (a: HttpAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(a);
    };
    const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    const parse = (): HttpAnswer => {
      const raw = chunks.join("");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1]);
      if (!status) return { error: "not an HTTP answer" };
      const bodyAt = raw.indexOf("\r\n\r\n");
      return { status, body: bodyAt < 0 ? "" : raw.slice(bodyAt + 4) };
    };
    const connecting = inNetns(netns, () =>
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open: (s) => void s.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
          data: (_s, d) => void chunks.push(d.toString()),
          close: () => finish(parse()),
          error: (_s, e) => finish({ error: e.message }),
          connectError: (_s, e) => finish({ error: e.message }),
        },
      }),
    );
    connecting.then(
      (s) => setTimeout(() => s.end(), timeoutMs),
      (e: Error) => finish({ error: e.message }),
    );
  });
}
