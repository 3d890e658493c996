/**
 * The two inputs of a CNI call, parsed and validated: the CNI_* environment and the
 * network configuration on stdin. Every refusal names the variable or field and value.
 */
import { CniCode, CniError } from "./errors.ts";
import { COMMAND_SINCE, compareVersions, requireSupported } from "./version.ts";
import { parseResult, type Result } from "./result.ts";
import { DEFAULT_AGENT_SOCKET } from "./wire.ts";

export const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
export type Command = (typeof COMMANDS)[number];

export type CniEnv = {
  command: Command;
  containerId: string;
  netns: string;
  ifname: string;
  args: Record<string, string>;
  path: string[];
};

export type Attachment = { containerID: string; ifname: string };

export type NetConf = {
  cniVersion: string;
  name: string;
  type: string;
  /** Name of the node's bridge (default "weave"). */
  bridge: string;
  hairpinMode: boolean;
  /** Pod MTU; default: the bridge's. */
  mtu?: number;
  /** The agent's unix socket (default /run/weave/weave.sock). */
  socket: string;
  prevResult?: Result;
  dns?: Result["dns"];
  /** GC only: the attachments the runtime still uses. */
  validAttachments?: Attachment[];
};

/** A container id as the CNI spec allows it (also what the agent's /ip/<id> accepts). */
export const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const NAME_RE = ID_RE;

/** Why `name` cannot be a Linux interface name, or undefined when it can. */
export function invalidIfname(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  if (name.length > 15) return `is ${name.length} characters long (at most 15)`;
  if (name === "." || name === "..") return "is not a valid name";
  if (/[/:\s]/.test(name)) return "contains '/', ':' or whitespace";
  return undefined;
}

const REQUIRED: Record<Command, (keyof typeof VARS)[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
  GC: ["CNI_PATH"],
  STATUS: ["CNI_PATH"],
  VERSION: [],
};
const VARS = { CNI_CONTAINERID: 0, CNI_NETNS: 0, CNI_IFNAME: 0, CNI_PATH: 0 };

const envError = (msg: string) => new CniError(CniCode.InvalidEnvironment, msg);

export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw envError(
      command
        ? `CNI_COMMAND "${command}" is not one of ${COMMANDS.join(", ")}`
        : `CNI_COMMAND is not set (one of ${COMMANDS.join(", ")})`,
    );
  }
  const cmd = command as Command;
  // VERSION needs nothing else, and libcni sends "dummy" in the other variables for it.
  if (cmd === "VERSION") return { command: cmd, containerId: "", netns: "", ifname: "", args: {}, path: [] };
  const missing = REQUIRED[cmd].filter((k) => !env[k]);
  if (missing.length) throw envError(`${cmd} needs ${missing.join(", ")}, not set`);

  const containerId = env.CNI_CONTAINERID ?? "";
  if (containerId && !ID_RE.test(containerId)) {
    throw envError(
      `CNI_CONTAINERID "${containerId}" has invalid characters (letters, digits, '_', '.', '-', starting with a letter or digit)`,
    );
  }
  const ifname = env.CNI_IFNAME ?? "";
  const why = ifname ? invalidIfname(ifname) : undefined;
  if (why) throw envError(`CNI_IFNAME "${ifname}" ${why}`);
  const netns = env.CNI_NETNS ?? "";
  if (netns && !netns.startsWith("/")) throw envError(`CNI_NETNS "${netns}" is not an absolute path`);

  return {
    command: cmd,
    containerId,
    netns,
    ifname,
    args: parseArgs(env.CNI_ARGS ?? ""),
    path: (env.CNI_PATH ?? "").split(":").filter(Boolean),
  };
}

/** CNI_ARGS: "K=V;K2=V2". */
export function parseArgs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of s.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw envError(`CNI_ARGS "${s}" has an entry "${pair}" that is not KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const invalid = (field: string, value: unknown, want: string) =>
  new CniError(CniCode.InvalidConfig, `${field} is ${JSON.stringify(value)}, expected ${want}`);

/** Parse the stdin config for `command`. VERSION only needs (and checks) cniVersion. */
export function parseNetConf(stdin: string, command: Command): NetConf {
  if (stdin.trim() === "") throw new CniError(CniCode.DecodeFailure, "network configuration on stdin is empty");
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(
      CniCode.DecodeFailure,
      `network configuration on stdin is not valid JSON: ${(e as Error).message}`,
    );
  }
  if (!isObj(raw))
    throw new CniError(
      CniCode.DecodeFailure,
      `network configuration must be a JSON object, got ${JSON.stringify(raw).slice(0, 60)}`,
    );

  const cniVersion = requireSupported(raw.cniVersion);
  const since = COMMAND_SINCE[command];
  if (since && compareVersions(cniVersion, since) < 0) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `${command} needs cniVersion ${since} or later, the configuration has "${cniVersion}"`,
    );
  }

  if (typeof raw.name !== "string" || !NAME_RE.test(raw.name)) {
    throw invalid("name", raw.name, "a network name (letters, digits, '_', '.', '-', starting with a letter or digit)");
  }
  if (typeof raw.type !== "string" || raw.type === "")
    throw invalid("type", raw.type, 'the plugin\'s name, e.g. "weave-net"');
  const bridge = raw.bridge ?? "weave";
  if (typeof bridge !== "string" || invalidIfname(bridge)) throw invalid("bridge", raw.bridge, "an interface name");
  const hairpinMode = raw.hairpinMode ?? true;
  if (typeof hairpinMode !== "boolean") throw invalid("hairpinMode", raw.hairpinMode, "true or false");
  const mtu = raw.mtu;
  if (mtu !== undefined && (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < 576 || mtu > 65535)) {
    throw invalid("mtu", mtu, "an integer from 576 to 65535");
  }
  const socket = raw.socket ?? DEFAULT_AGENT_SOCKET;
  if (typeof socket !== "string" || !socket.startsWith("/") || socket.length > 107)
    throw invalid("socket", raw.socket, "an absolute path of at most 107 characters (the agent's unix socket)");
  if (raw.ipam !== undefined && !(isObj(raw.ipam) && Object.keys(raw.ipam).length === 0)) {
    throw new CniError(
      CniCode.UnsupportedField,
      `ipam ${JSON.stringify(raw.ipam)} is not supported: weave-net takes addresses from the weave agent, remove the ipam section`,
    );
  }
  if (raw.dns !== undefined && !isObj(raw.dns)) throw invalid("dns", raw.dns, "an object");

  let prevResult: Result | undefined;
  if (raw.prevResult !== undefined && raw.prevResult !== null) prevResult = parseResult(raw.prevResult);
  if (command === "CHECK" && !prevResult)
    throw invalid("prevResult", raw.prevResult, "the result of ADD (CHECK verifies it)");

  let validAttachments: Attachment[] | undefined;
  if (command === "GC") {
    const key = raw["cni.dev/valid-attachments"] !== undefined ? "cni.dev/valid-attachments" : "cni.dev/attachments";
    const list = raw[key] ?? [];
    if (!Array.isArray(list)) throw invalid(key, list, "a list of {containerID, ifname}");
    validAttachments = list.map((a, i) => {
      if (!isObj(a) || typeof a.containerID !== "string" || typeof a.ifname !== "string")
        throw invalid(`${key}[${i}]`, a, "{containerID, ifname}");
      return { containerID: a.containerID, ifname: a.ifname };
    });
  }

  return {
    cniVersion,
    name: raw.name,
    type: raw.type,
    bridge,
    hairpinMode,
    mtu: mtu as number | undefined,
    socket,
    prevResult,
    dns: raw.dns as Result["dns"],
    validAttachments,
  };
}
