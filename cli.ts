#!/usr/bin/env bun
/**
 * The weave executable: cac wiring only. Each command lives in commands/ and is loaded
 * when it runs. With CNI_COMMAND set and no arguments (how kubelet, podman or libcni run
 * a plugin) it is the CNI plugin, and so it is whenever it runs under the plugin's name
 * (dist/cni/weave-net, /opt/cni/bin/weave-net). Errors end here, in one place, as exit codes.
 */
import { WeaveError } from "./net/errors.ts";
import { VERSION } from "./net/version.ts";

async function main(argv: string[]): Promise<number> {
  const asPlugin = /(^|\/)weave-net$/.test(process.argv0);
  if ((process.env.CNI_COMMAND || asPlugin) && argv.length === 0) return (await import("./commands/cni.ts")).run();

  // Loaded here, not at the top: the plugin path above starts faster without it.
  const { cac } = await import("cac");
  const cli = cac("weave");
  cli
    .command("agent", "Run the weave agent of this node (what the DaemonSet runs)")
    .option("--data-dir <dir>", "Where state persists", { default: "/var/lib/weave" })
    .option("--ipalloc-range <cidr>", "Pod address range (env IPALLOC_RANGE; default 10.32.0.0/12)")
    .option("--mtu <bytes>", "Overlay MTU (env WEAVE_MTU; default: underlay MTU - 50)")
    .option("--bridge <name>", "Bridge name", { default: "weave" })
    .option("--http-addr <host:port>", "Local read-only API address", { default: "127.0.0.1:6784" })
    .option("--metrics-addr <ip:port>", "Serve /metrics here (env WEAVE_METRICS_ADDR; default 0.0.0.0:6782; off: none)")
    .option(
      "--socket <path>",
      "Root-only unix socket for what changes state: CNI, /ip, rmpeer (default /run/weave/weave.sock)",
    )
    .option("--nickname <name>", "This node's name (env HOSTNAME)")
    .option("--peers <list>", "Peers to connect to, comma or space separated ip[:port] (env KUBE_PEERS)")
    .option("--port <port>", "Mesh TCP port", { default: 6783 })
    .option("--advertise-address <ip>", "Address peers reach this node at (default: detected)")
    .option("--conn-limit <n>", "Most mesh connections (env CONN_LIMIT; default 200)")
    .option("--no-discovery", "Dial only --peers, not the peers they tell us about")
    .option("--kubeconfig <path>", "Follow this cluster's Node list for peers (automatic inside a pod)")
    .option(
      "--password-file <file>",
      "Encrypt the mesh and pod traffic between nodes with the password in this file (or env WEAVE_PASSWORD)",
    )
    .option("--wireguard-socket-dir <dir>", "wireguard-go's control socket directory (default /var/run/wireguard)")
    .option(
      "--ipalloc-init <how>",
      "How the address ring starts (env IPALLOC_INIT): consensus[=N] | seed=<name,...> | observer",
    )
    .action(async (o) => (await import("./commands/agent.ts")).run(o));
  cli
    .command(
      "npc",
      "Run the NetworkPolicy controller of this node (the DaemonSet's weave-npc container): " +
        "policies, pods and namespaces -> one nftables table, inet weave-npc",
    )
    .option("--node-name <name>", "This node's name (env HOSTNAME): whose pods to enforce for")
    .option("--kubeconfig <path>", "Kubeconfig file (default: in-cluster inside a pod, else $KUBECONFIG)")
    .option("--metrics-addr <ip:port>", "GET /status (200 once synced) and /metrics", { default: "0.0.0.0:6781" })
    .option("--resync <seconds>", "Full reconcile against the kernel this often", { default: 30 })
    .action(async (o) => (await import("./commands/npc.ts")).run(o));
  cli
    .command("cni", "Act as the CNI plugin (reads CNI_* env and the config on stdin)")
    .action(async () => (await import("./commands/cni.ts")).run());
  cli
    .command("setup-cni", "Install the CNI plugin and write 10-weave.conflist")
    .option("--bin-dir <dir>", "CNI plugin directory", { default: "/opt/cni/bin" })
    .option("--conf-dir <dir>", "CNI config directory", { default: "/etc/cni/net.d" })
    .option("--force", "Install even beside another network's CNI config")
    .option("--kubeconfig <path>", "Cluster to record a refusal in, as a Node event (automatic inside a pod)")
    .option("--node-name <name>", "Node to record a refusal on (env HOSTNAME)")
    .action(async (o) => (await import("./commands/setup-cni.ts")).run(o));
  cli
    .command("install", "Put the network on a Kubernetes cluster (RBAC, ConfigMap, DaemonSet) and wait for the agents")
    .option("--kubeconfig <path>", "Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    .option("--context <name>", "Kubeconfig context (default: its current-context)")
    .option("--ipalloc-range <cidr>", "Pod address range (env IPALLOC_RANGE; default 10.32.0.0/12)")
    .option("--mtu <bytes>", "Overlay MTU (env WEAVE_MTU; default: each node's underlay MTU - 50)")
    .option("--conn-limit <n>", "Most mesh connections per agent (env CONN_LIMIT; default 200)")
    .option("--masq-local", "Masquerade traffic to local pods too (NO_MASQ_LOCAL=0; default: keep client addresses)")
    .option(
      "--extra-args <flags>",
      "More weave agent flags, as one value: --extra-args='--flag value' (env EXTRA_ARGS)",
    )
    .option("--image <ref>", "Agent image (env WEAVE_IMAGE; build it from manifests/Dockerfile)")
    .option(
      "--password-secret <name>",
      "Encrypt: make this Secret (key weave-password) with the password of WEAVE_PASSWORD or --password-file; the agents read it",
    )
    .option("--password-file <file>", "With --password-secret: the password is in this file (else env WEAVE_PASSWORD)")
    .option(
      "--service-cidr <cidr>",
      "The cluster's service range (IPv4, IPv6, or both comma-separated) to check the pod range against (default: inferred)",
    )
    .option("--dry-run", "Print the manifests instead; touch nothing")
    .option("-o, --output <format>", "Print the manifests as yaml or json instead (implies --dry-run)")
    .option("--timeout <seconds>", "How long to wait for one Ready agent per node (0: do not wait)", { default: 300 })
    .action(async (o) => (await import("./commands/install.ts")).run(o));
  cli
    .command("uninstall", "Delete what weave install made from the cluster, nothing else")
    .option("--kubeconfig <path>", "Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    .option("--context <name>", "Kubeconfig context (default: its current-context)")
    .action(async (o) => (await import("./commands/uninstall.ts")).run(o));
  cli
    .command(
      "lab <action> [...args]",
      "A Kubernetes cluster on this machine out of namespaces: up | down | status | agent stop|start NODE | " +
        "npc stop|start NODE | " +
        "cut|heal NODE | block|unblock NODE PEER [--udp PORT] | pod add NAME --node NODE | pod del NAME | node add | node remove NODE",
    )
    .option("--name <name>", "Lab name (default: the only lab up, else lab)")
    .option("--nodes <n>", "Number of nodes", { default: 3 })
    .option("--pods <m>", "Pods per node", { default: 2 })
    .option("--json", "Machine-readable output (status)")
    .option("--ipalloc-range <cidr>", "Pod address range of the lab's agents (default 10.32.0.0/12)")
    .option("--node <node>", "pod add: the node to run it on (n2 or lab-n2)")
    .option("--namespace <ns>", "pod add|del: the pod's namespace", { default: "default" })
    .option("--labels <k=v,...>", "pod add: the pod's labels")
    .option("--port <name=port/proto>", "pod add: a named container port (repeat for more)")
    .option("--udp <port>", "block|unblock: only this UDP port (6784: VXLAN, 6785: WireGuard), not all traffic")
    .option(
      "--password-file <file>",
      "up, node add: encrypt with the password in this file (or env WEAVE_PASSWORD); node add: the new node's",
    )
    .action(async (action, args, o) => (await import("./commands/lab.ts")).run(action, args, o));
  cli
    .command(
      "sleeve-selftest",
      "For tests: a sleeve engine driven by JSON lines on stdin (commands/sleeve-selftest.ts)",
    )
    .option("--tap <name>", "The TAP device to create")
    .option("--port <port>", "UDP port", { default: 6783 })
    .option("--check", "Only say that this binary has the command")
    .action(async (o) => (await import("./commands/sleeve-selftest.ts")).run(o));
  cli
    .command(
      "policy <action>",
      "explain --from NS/POD --to NS/POD|IP --port 80/TCP: would the NetworkPolicies allow this connection, " +
        "and why (exit 0 allowed, 1 denied, 2 could not decide); no traffic is sent",
    )
    .option("--from <ns/pod>", "The client pod")
    .option("--to <ns/pod|ip>", "The server pod, or an address")
    .option("--port <port/proto>", "The server's port: 80/TCP, 53/UDP, or a container port name of the server pod")
    .option("--kubeconfig <path>", "Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    .option("--context <name>", "Kubeconfig context (default: its current-context)")
    .option("-o, --output <format>", "Print the verdict and its reasons as json")
    .action(async (action, o) => (await import("./commands/policy.ts")).run(action, o));
  cli
    .command("status [what]", "What the local agent knows: summary, peers, connections or ipam")
    .option("--agent <url>", "Agent API", { default: "http://127.0.0.1:6784" })
    .action(async (what, o) => (await import("./commands/status.ts")).run(what, o));
  cli
    .command(
      "rmpeer <peer>",
      "Hand the address space of a peer gone for good (name or nickname) to the ring: its heir takes it over",
    )
    .option(
      "--socket <path>",
      "The agent's root-only unix socket (default /run/weave/weave.sock, else where the agent reports it)",
    )
    .action(async (peer, o) => (await import("./commands/rmpeer.ts")).run(peer, o));
  cli
    .command("report", "The local agent's full report as JSON")
    .option("--agent <url>", "Agent API", { default: "http://127.0.0.1:6784" })
    .action(async (o) => (await import("./commands/status.ts")).report(o));
  cli
    .command(
      "doctor",
      "The troubleshooting checklist: find what is wrong and say how to fix it (cluster, --node or --lab)",
    )
    .option("--lab [name]", "Check the lab of this name (default: lab) from the root namespace")
    .option("--node", "Check this node only, through the local agent and the kernel")
    .option("--kubeconfig <path>", "Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    .option("--context <name>", "Kubeconfig context (default: its current-context)")
    .option("-o, --output <format>", "Print every check as json")
    .option(
      "--no-probes",
      "Cluster mode: do not start probe pods (one per node) to ping, reach the kubernetes Service and resolve DNS",
    )
    .option("--probe-image <ref>", "Cluster mode: image of the probe pods (needs ping, nc, nslookup)", {
      default: "busybox:1.36",
    })
    .option("--probe-namespace <ns>", "Cluster mode: namespace of the probe pods", { default: "kube-system" })
    .action(async (o) => (await import("./commands/doctor.ts")).run(o));
  cli.help();
  cli.version(VERSION);

  cli.parse(["", "", ...argv], { run: false });
  if (!cli.matchedCommand) {
    if (argv.length && !cli.options.help && !cli.options.version)
      throw new WeaveError("E_USAGE", `unknown command "${argv[0]}"; see weave --help`);
    if (!cli.options.help && !cli.options.version) cli.outputHelp();
    return 0;
  }
  const code = await cli.runMatchedCommand();
  return typeof code === "number" ? code : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof WeaveError) {
      process.stderr.write(`weave: ${e.message} [${e.code}]\n`);
      process.exit(e.code === "E_USAGE" ? 2 : 1);
    }
    // cac's own parse errors (unknown option, missing value) are usage errors too.
    if (e instanceof Error && e.name === "CACError") {
      process.stderr.write(`weave: ${e.message} [E_USAGE]\n`);
      process.exit(2);
    }
    process.stderr.write(`weave: unexpected error: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
