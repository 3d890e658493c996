/**
 * containerd 1.6's config.toml (format version 2) for one test node: every path the daemon
 * writes under one directory of its own, the CRI plugin pointed at weave's CNI config and
 * a bin dir holding weave-net, portmap and loopback, and the local sandbox image.
 *
 * What each setting is for, beyond the obvious paths:
 *  - runc options `Root`: runc's state, else /run/containerd/runc/<namespace> (shared).
 *  - `opt` path: else /opt/containerd.
 *  - `restrict_oom_score_adj`: the CRI plugin gives sandboxes oom_score_adj -998, and this
 *    machine's root lacks CAP_SYS_RESOURCE, so runc's init cannot lower it and dies
 *    ("can't get final child's PID from pipe: EOF"); restricted, the score stays at
 *    containerd's own (0).
 *  - `max_conf_num = 1`: only the first conflist of conf_dir counts, as on a kubelet node.
 *  - aufs/btrfs/zfs/devmapper snapshotters disabled: they only log that they skip.
 *  - the stream server (exec/attach/port-forward) on 127.0.0.1, port chosen by the kernel;
 *    it is inside the node's namespace anyway.
 * Kept pure (text in, text out) so a unit test or a reader can see the whole file.
 */

export type ContainerdPaths = {
  /** containerd's root (content store, snapshots, metadata). */
  root: string;
  /** containerd's state (task bundles, shim state, CRI sandbox state). */
  state: string;
  /** The gRPC socket the CRI client and ctr talk to. */
  socket: string;
  opt: string;
};

export type ContainerdConfig = ContainerdPaths & {
  /** CNI plugins containerd may run (its cni bin_dir: one directory, not a list). */
  cniBinDir: string;
  /** Where the network's conflist is (the node's kubelet CNI conf dir). */
  cniConfDir: string;
  /** The pause image every sandbox runs, already imported in namespace k8s.io. */
  sandboxImage: string;
};

const q = (s: string) => JSON.stringify(s); // a TOML basic string is a JSON string for our paths

export function containerdConfigToml(c: ContainerdConfig): string {
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  return [
    "version = 2",
    `root = ${q(c.root)}`,
    `state = ${q(c.state)}`,
    "oom_score = 0",
    "disabled_plugins = [",
    '  "io.containerd.snapshotter.v1.aufs",',
    '  "io.containerd.snapshotter.v1.btrfs",',
    '  "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.snapshotter.v1.devmapper",',
    "]",
    "",
    "[grpc]",
    `  address = ${q(c.socket)}`,
    "[ttrpc]",
    `  address = ${q(`${c.socket}.ttrpc`)}`,
    "",
    "[plugins]",
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(c.opt)}`,
    `  ${cri}]`,
    `    sandbox_image = ${q(c.sandboxImage)}`,
    "    restrict_oom_score_adj = true",
    '    stream_server_address = "127.0.0.1"',
    '    stream_server_port = "0"',
    `    ${cri}.cni]`,
    `      bin_dir = ${q(c.cniBinDir)}`,
    `      conf_dir = ${q(c.cniConfDir)}`,
    "      max_conf_num = 1",
    `    ${cri}.containerd]`,
    '      snapshotter = "overlayfs"',
    '      default_runtime_name = "runc"',
    `      ${cri}.containerd.runtimes.runc]`,
    '        runtime_type = "io.containerd.runc.v2"',
    `        ${cri}.containerd.runtimes.runc.options]`,
    `          Root = ${q(`${c.state}/runc`)}`,
    "          SystemdCgroup = false",
    "",
  ].join("\n");
}
