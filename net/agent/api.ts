/**
 * The agent's local HTTP API: Weave's paths (/status and its sections, /report, /ip,
 * DELETE /peer/<name>) and the plugin's POST /cni. A plain Request -> Response function,
 * so tests call it without a socket.
 *
 * It is served twice: on TCP 127.0.0.1:6784, where every process on the node reaches
 * it, only what reads (/status, /report, GET /ip) is answered, and a change answers 403
 * naming the socket; on the root-only unix socket everything is, with the caller's
 * credentials from the kernel (`caller`): a caller that is not root is refused, and the
 * pid through which CNI_NETNS is opened is the kernel's, not the request's.
 */
import { withPrefix } from "../cidr.ts";
import { RangeFullError } from "../ipam/allocator.ts";
import { WeaveError } from "../errors.ts";
import type { Agent } from "./agent.ts";
import { connectionsText, ipamText, peersText, report, statusText } from "./report.ts";
import type { CniRequest } from "../cni/wire.ts";
import { COMMANDS, ID_RE } from "../cni/config.ts";
import { CniCode } from "../cni/errors.ts";
import { DEFAULT_AGENT_SOCKET } from "../cni/wire.ts";

/** Who called over the unix socket, as the kernel says (SO_PEERCRED). */
export type Caller = { pid: number; uid: number };
/** `caller` is set on the unix socket and absent on TCP; `socket` names it in refusals. */
export type ApiOptions = { caller?: Caller; socket?: string };

/** How long an allocation waits for address space from peers before giving up. */
export const SPACE_WAIT_MS = 10_000;

const text = (body: string, status = 200) =>
  new Response(body.endsWith("\n") ? body : `${body}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

/** The calls that change state: the CNI calls, allocating and releasing, rmpeer. */
function changesState(method: string, path: string): boolean {
  if (path === "/cni") return method === "POST";
  if (/^\/ip\/[^/]+$/.test(path)) return method === "POST" || method === "DELETE";
  return /^\/peer\/[^/]+$/.test(path) && method === "DELETE";
}

export async function handleApi(agent: Agent, req: Request, o: ApiOptions = {}): Promise<Response> {
  const url = new URL(req.url);
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const m = req.method;

  if (changesState(m, path)) {
    const socket = o.socket ?? DEFAULT_AGENT_SOCKET;
    if (!o.caller)
      return text(
        `${m} ${path} changes the network: it is served only on the agent's unix socket ${socket} (root only)`,
        403,
      );
    if (o.caller.uid !== 0)
      return text(
        `${m} ${path}: only root may change the network (caller uid ${o.caller.uid}, pid ${o.caller.pid})`,
        403,
      );
  }

  if (path === "/cni" && m === "POST") {
    const started = performance.now();
    let body: CniRequest;
    try {
      body = (await req.json()) as CniRequest;
    } catch {
      return text("body is not JSON", 400);
    }
    if (!body || typeof body.command !== "string" || typeof body.conf !== "object")
      return text("body is not a CNI request", 400);
    // the plugin turns 503 into code 11 (try again later)
    const command = (COMMANDS as readonly string[]).includes(body.command) ? body.command : "other";
    const observe = (code: number | undefined) =>
      agent.stats.cni({ command, code, seconds: (performance.now() - started) / 1000 });
    if (!agent.ready) {
      observe(CniCode.TryAgainLater);
      return text(`not ready: ${agent.reason}`, 503);
    }
    body.pid = o.caller!.pid;
    // Out of space: wait (bounded) for the ring to give us some before trying.
    if (body.command === "ADD" && agent.allocator.free === 0 && !(await agent.waitForSpace(SPACE_WAIT_MS)))
      agent.noSpace(`pod ${body.containerId ?? "?"}`, SPACE_WAIT_MS);
    const reply = agent.cni.run(body);
    observe(reply.ok ? undefined : reply.code);
    return Response.json(reply);
  }

  if (path === "/status" && m === "GET") return text(statusText(agent), agent.ready ? 200 : 503);
  if (path === "/status/peers" && m === "GET") return text(peersText(agent));
  if (path === "/status/connections" && m === "GET") return text(connectionsText(agent));
  if (path === "/status/ipam" && m === "GET")
    return agent.ready ? text(ipamText(agent)) : text(`not ready: ${agent.reason}`, 503);
  if (path === "/report" && m === "GET") return Response.json(report(agent));
  if (path === "/ip" && m === "GET") {
    const owned = agent.podEntries().map((e) => ({
      containerid: e.containerId,
      ifname: e.ifname,
      addrs: [withPrefix(e.address, agent.cfg.range)],
      ...(e.pod ? { pod: e.pod } : {}),
    }));
    return Response.json({ owned });
  }

  const ip = /^\/ip\/([^/]+)$/.exec(path);
  if (ip) {
    const cid = decodeURIComponent(ip[1]!);
    if (!ID_RE.test(cid)) return text(`container id "${cid}" has invalid characters`, 400);
    if (!agent.ready) return text(`not ready: ${agent.reason}`, 503);
    const ifname = url.searchParams.get("ifname") ?? undefined;
    if (m === "GET") {
      const held = agent.allocator.lookup(cid).filter((e) => ifname === undefined || e.ifname === ifname);
      return held.length
        ? text(held.map((e) => withPrefix(e.address, agent.cfg.range)).join("\n"))
        : text(`no address held for ${cid}`, 404);
    }
    if (m === "POST") {
      if (agent.allocator.free === 0 && !(await agent.waitForSpace(SPACE_WAIT_MS)))
        agent.noSpace(`container ${cid}`, SPACE_WAIT_MS);
      try {
        const { entry, created } = agent.allocator.allocate(
          cid,
          ifname ?? "eth0",
          url.searchParams.get("pod") ?? undefined,
        );
        return text(withPrefix(entry.address, agent.cfg.range), created ? 201 : 200);
      } catch (e) {
        if (e instanceof RangeFullError) return text(e.message, 503);
        throw e;
      }
    }
    if (m === "DELETE") {
      agent.allocator.release(cid, ifname);
      return new Response(null, { status: 204 });
    }
    return text(`method ${m} not allowed on ${path}`, 405);
  }
  const peer = /^\/peer\/([^/]+)$/.exec(path);
  if (peer && m === "DELETE") {
    try {
      const r = agent.rmpeer(decodeURIComponent(peer[1]!));
      return text(
        r.taken !== undefined
          ? `took over ${r.taken} addresses of ${r.name}`
          : `removal of ${r.name} requested; its heir ${r.heir} takes its address space over`,
      );
    } catch (e) {
      if (e instanceof WeaveError) return text(e.message, e.code === "E_NO_PEER" ? 404 : 409);
      throw e;
    }
  }
  return text(`no such path: ${m} ${path}`, 404);
}
