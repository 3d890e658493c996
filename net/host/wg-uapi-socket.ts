/**
 * wireguard-go's UAPI socket (a unix stream socket): one request per connection, the
 * answer read until its closing `errno=N` and a blank line. The text on both sides is
 * net/encap/wireguard-uapi.ts's; a set request carries keys, so it goes to the socket only.
 */
import { createConnection } from "node:net";
import type { WgChanges, WgDeviceState } from "../encap/wireguard.ts";
import { answerErrno, parseGet, renderSet, UAPI_GET, UapiError } from "../encap/wireguard-uapi.ts";

/** One request on the UAPI socket at `path`; resolves with the whole answer. */
export function uapiRequest(path: string, request: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const sock = createConnection({ path });
    const finish = (err?: Error) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(answer);
    };
    const timer = setTimeout(() => finish(new Error(`${path}: no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(request));
    sock.on("data", (chunk: string) => {
      answer += chunk;
      if (answerErrno(answer) !== undefined) finish();
    });
    sock.on("error", (e) => finish(e));
    sock.on("close", () => finish(new Error(`${path}: closed before answering`)));
  });
}

export async function uapiGet(path: string): Promise<WgDeviceState> {
  const answer = await uapiRequest(path, UAPI_GET);
  const errno = answerErrno(answer)!;
  if (errno !== 0) throw new UapiError("get", errno);
  return parseGet(answer);
}

export async function uapiSet(path: string, changes: WgChanges): Promise<void> {
  const errno = answerErrno(await uapiRequest(path, renderSet(changes)))!;
  if (errno !== 0) throw new UapiError("set", errno);
}
