/**
 * `weave policy explain`'s command line into the evaluator's inputs, against the API's
 * state (a PolicyView): `--from NS/POD`, `--to NS/POD` or an address (a pod's address is
 * that pod; a node's address is that node, whose traffic to its own pods is never
 * policed; anything else an address outside), and `--port 80/TCP`, `80` (TCP), or a port
 * name (`serve-80-tcp`, `http/TCP`) resolved on the destination pod's container ports.
 * Every refusal is an ExplainInputError naming the flag and the value: the command exits
 * 2, "could not decide", rather than guess.
 */
import { canonicalIp, ipFamily } from "../cidr.ts";
import type { Endpoint } from "./evaluate.ts";
import { PROTOCOLS, type Pod, type Protocol } from "./model.ts";
import type { PolicyView } from "./state.ts";

export class ExplainInputError extends Error {
  constructor(
    readonly flag: string,
    readonly value: string | undefined,
    reason: string,
  ) {
    super(`${flag} ${JSON.stringify(value ?? "")} ${reason}`);
    this.name = "ExplainInputError";
  }
}

/** A port as given: a number or a name, with a protocol when one was written. */
export type PortSpec = { number?: number; name?: string; protocol?: Protocol };

const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export function parsePort(text: string | undefined): PortSpec {
  if (!text) throw new ExplainInputError("--port", text, "is missing: give PORT/PROTOCOL, e.g. 80/TCP");
  const [portPart, protoPart, ...rest] = text.split("/");
  if (rest.length) throw new ExplainInputError("--port", text, "is not PORT/PROTOCOL, e.g. 80/TCP");
  let protocol: Protocol | undefined;
  if (protoPart !== undefined) {
    const upper = protoPart.toUpperCase() as Protocol;
    if (!PROTOCOLS.includes(upper))
      throw new ExplainInputError("--port", text, `has protocol "${protoPart}": not TCP, UDP or SCTP`);
    protocol = upper;
  }
  const p = portPart ?? "";
  if (/^\d+$/.test(p)) {
    const number = Number(p);
    if (number < 1 || number > 65535) throw new ExplainInputError("--port", text, "is not a port from 1 to 65535");
    return { number, protocol: protocol ?? "TCP" };
  }
  if (!PORT_NAME.test(p) || p.length > 15)
    throw new ExplainInputError("--port", text, "is neither a port number from 1 to 65535 nor a port name");
  return { name: p, ...(protocol ? { protocol } : {}) };
}

/** The port number and protocol on the destination (a named port resolved on its pod). */
export function resolvePort(spec: PortSpec, to: Endpoint, given: string): { port: number; protocol: Protocol } {
  if (spec.number !== undefined) return { port: spec.number, protocol: spec.protocol ?? "TCP" };
  if (!("pod" in to))
    throw new ExplainInputError("--port", given, `is a port name, but ${to.ip} is no pod to resolve it on`);
  const pod = to.pod;
  const named = pod.ports.filter((p) => p.name === spec.name && (!spec.protocol || p.protocol === spec.protocol));
  if (!named[0]) {
    const have = pod.ports.map((p) => `${p.name} ${p.port}/${p.protocol}`).join(", ") || "none";
    const why = `${pod.namespace}/${pod.name} has no container port named ${spec.name}`;
    throw new ExplainInputError(
      "--port",
      given,
      `${why}${spec.protocol ? ` with ${spec.protocol}` : ""} (it has: ${have})`,
    );
  }
  return { port: named[0].port, protocol: named[0].protocol };
}

/** `NS/POD` (or, for --to, an address) as an endpoint of the evaluator. */
export function resolveEndpoint(view: PolicyView, flag: "--from" | "--to", text: string | undefined): Endpoint {
  if (!text) throw new ExplainInputError(flag, text, "is missing: give NAMESPACE/POD");
  if (ipFamily(text)) return endpointOfAddress(view, canonicalIp(text));
  const parts = text.split("/");
  if (parts.length !== 2 || !parts[0] || !parts[1])
    throw new ExplainInputError(flag, text, "is not NAMESPACE/POD (or a pod's or any other IP address)");
  const [ns, name] = parts as [string, string];
  const pod = view.state.pods.find((p) => p.namespace === ns && p.name === name);
  if (pod) return { pod };
  const skipped = view.skipped.get(text);
  if (skipped) throw new ExplainInputError(flag, text, `is a pod that enforcement does not police: ${skipped}`);
  const there = view.state.namespaces.has(ns) ? `no pod ${name} in namespace ${ns}` : `no namespace ${ns}`;
  throw new ExplainInputError(flag, text, `names no pod: the API has ${there}`);
}

function endpointOfAddress(view: PolicyView, ip: string): Endpoint {
  const pod: Pod | undefined = view.state.pods.find((p) => p.ips.some((x) => canonicalIp(x) === ip));
  if (pod && !pod.hostNetwork) return { pod };
  const node = view.nodes.find((n) => n.addresses.some((a) => canonicalIp(a) === ip));
  return node ? { ip, node: node.name } : { ip };
}
