/**
 * What `weave doctor` knows and what it concludes. Gathering (net/doctor/gather-*.ts)
 * fills `Facts` with everything it could see, leaving a field undefined where it could
 * not look; the checks (net/doctor/checks-*.ts) are pure functions of `Facts` that skip
 * what was not gathered, so the same checks serve the lab, one node, and fake facts in
 * unit tests.
 */

import type { NftTable } from "../policy/nft-model.ts";
import type { PolicyView } from "../policy/state.ts";

export type Status = "pass" | "warn" | "fail";

/** One verdict: which check, where, what was seen, and what to do about it. */
export type CheckResult = { name: string; status: Status; node?: string; evidence: string; fix: string };

/** The parts of the agent's GET /report that doctor reads (net/agent/report.ts). */
export type AgentReport = {
  Ready: boolean;
  Reason?: string;
  Router: null | {
    ProtocolMinVersion: number;
    ProtocolMaxVersion: number;
    /** Weave's /report: a boolean (older agents said "disabled"). */
    Encryption?: boolean | string;
    Name: string;
    NickName: string;
    Address?: string;
    Peers: {
      Name: string;
      NickName: string;
      Addresses: string[];
      Reachable: boolean;
      Connections: { Name: string; NickName: string; Established: boolean }[];
    }[];
    Connections: { Address: string; Outbound: boolean; State: string; Info: string; Attrs?: ConnectionAttrs | null }[];
    /**
     * Every reachable peer's data path (net/agent/report.ts `dataPaths`; older agents
     * have none): the fast one, or the sleeve, through `Via` when there is no direct
     * connection, with why and since when (ISO) on the sleeve.
     */
    DataPaths?: DataPath[];
    DatapathErrors?: string[];
  };
  Bridge: null | { Name: string; Address: string; MTU: number; MTUSource?: string };
  IPAM: {
    Range: string;
    RangeNumIPs?: number;
    Ring?: string | null;
    Status: string;
    Conflicts?: string[];
    Free?: number;
    Asking?: boolean;
    Entries?: { Peer: string; Nickname: string; Size: number; Free: number; Asking: boolean; Spans: string[] }[];
    Owned?: { ContainerID: string; Ifname: string; Address: string; Pod: string | null }[];
  };
};

/**
 * Weave's per-connection attributes of an established connection (net/agent/report.ts).
 * With a password: `encrypted` (the mesh connection and a tunnel to that peer), the
 * tunnel's WireGuard (`kernel`/`userspace`; absent while the device is not up), its last
 * handshake (null: none yet), its counters, and `noTunnel`: why the peer has none.
 */
export type ConnectionAttrs = {
  name?: string;
  mtu?: number;
  encrypted?: boolean;
  wireguard?: string;
  device?: string;
  handshakeAgoS?: number | null;
  rxBytes?: number;
  txBytes?: number;
  noTunnel?: string;
  /** On the sleeve (`name` "sleeve"): why, and since when (ISO). */
  sleeveReason?: string;
  sleeveSince?: string;
};

/** One peer's data path as an agent reports it (`Router.DataPaths`). */
export type DataPath = {
  Name: string;
  NickName: string;
  Path: "fastdp" | "sleeve";
  /** Routed: the neighbour whose sleeve it goes through. */
  Via?: string;
  ViaNickName?: string;
  Reason?: string;
  Since?: string;
};

export type Link = {
  name: string;
  kind?: string;
  up: boolean;
  mtu: number;
  master?: string;
  vxlanPort?: number;
  vxlanLocal?: string;
};
export type Addr = { ifname: string; ip: string; prefix: number };
export type Route = { dst: string; dev?: string; gateway?: string; table?: string; type?: string };

/** A firewall rule that drops (or may drop) mesh or VXLAN traffic. */
export type PortDrop = {
  proto: "tcp" | "udp";
  port: number;
  table: string;
  chain: string;
  rule: string;
  certain: boolean;
};

/** A CNI config file of a node's conf dir; `text` undefined when it could not be read. */
export type CniFile = { name: string; text?: string };

/** A node's `weave npc`: its process, its /status, the kernel's table, its drop log or counters. */
export type NpcFacts = {
  /** The process is alive (lab: pid); undefined when doctor cannot tell. */
  running?: boolean;
  pid?: number;
  /** GET /status on :6781 answered 200: the kernel holds what its first full list asked for. */
  synced?: boolean;
  statusText?: string;
  /** Why /status could not be asked. */
  error?: string;
  /** The kernel's table inet weave-npc; null: there is none; undefined: not read. */
  table?: NftTable | null;
  tableError?: string;
  /** Its log (lab: <dataDir>/npc.log; cluster: the weave-npc container's). */
  log?: { path: string; lines: string[]; error?: string };
  /** weavenpc_blocked_connections_total by "PROTOCOL PORT", from its /metrics (node mode). */
  blocked?: Record<string, number>;
};

export type NodeFacts = {
  name: string;
  /** The address peers reach this node at (lab.json, or the agent's advertise address). */
  ip?: string;
  /** False: a full look (this node's state was gathered); true: only known as a peer. */
  remote?: boolean;
  agent: {
    /** The process is alive (lab: pid); undefined when doctor cannot tell. */
    running?: boolean;
    pid?: number;
    /** GET /status answered 200. */
    ready?: boolean;
    statusText?: string;
    report?: AgentReport;
    /** Why the API could not be asked. */
    error?: string;
  };
  links?: Link[];
  addrs?: Addr[];
  routes?: Route[];
  firewall?: { drops: PortDrop[]; error?: string };
  cni?: { dir: string; files: CniFile[]; error?: string };
  log?: { path: string; lines: string[]; error?: string };
  npc?: NpcFacts;
};

export type PodFacts = {
  name: string;
  node: string;
  /** The address the pod should have (lab.json); undefined when unknown. */
  expectedIp?: string;
  containerId?: string;
  /** What its eth0 has; undefined when it has none. */
  ip?: string;
  mtu?: number;
  /** The gateway of its default route; undefined when it has none. */
  gateway?: string;
  /** Its namespace could not be looked into. */
  error?: string;
};

/**
 * One active probe between two nodes (or inside one): a ping from a pod (or the node
 * itself when it has no pod) to an address on `to`, a don't-fragment ping at full size,
 * or a TCP connect to port 6783.
 */
export type ProbeKind = "ping" | "ping-df" | "ping-local" | "tcp-6783";
export type Probe = {
  kind: ProbeKind;
  from: string;
  to: string;
  src: string;
  dst: string;
  ok: boolean;
  detail: string;
  /** A don't-fragment ping refused locally: the source has this smaller path MTU cached for `dst`. */
  cachedMtu?: number;
};

/** How to phrase fixes for where doctor runs. */
export type Hints = {
  startAgent(node: string): string;
  agentLogs(node: string): string;
  /** How to run a command on `node` (a prefix such as `ip netns exec lab-n1`). */
  onNode(node: string): string;
  /** How to start a node's `weave npc`, and where its log is. */
  startNpc?(node: string): string;
  npcLogs?(node: string): string;
};

export type Facts = {
  mode: "lab" | "node";
  /** The lab's name, or this node's name. */
  target: string;
  /** The pod range (the agents' IPAM range). */
  range?: string;
  serviceRange?: string;
  nodes: NodeFacts[];
  pods: PodFacts[];
  probes: Probe[];
  /** The API's policies, pods and namespaces, for the drift check; `error`: they could not be read. */
  policy?: { view?: PolicyView; source: string; error?: string };
  /** Time of gathering (ms), for "recent" log lines. */
  now: number;
  hints: Hints;
};
