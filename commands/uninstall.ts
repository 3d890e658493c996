/** `weave uninstall`: deletes what `weave install` made, and nothing else (net/k8s/install.ts). */
import { CONFLIST_FILE, PLUGIN_NAME } from "../net/cni/conflist.ts";

export interface UninstallFlags {
  kubeconfig?: string;
  context?: string;
}

export interface UninstallIO {
  env: Record<string, string | undefined>;
  out: (text: string) => void;
  log: (line: string) => void;
}

const realIO: UninstallIO = {
  env: process.env,
  out: (t) => process.stdout.write(t),
  log: (l) => process.stderr.write(`${l}\n`),
};

export async function run(o: UninstallFlags, io: UninstallIO = realIO): Promise<number> {
  const { loadKubeConfig } = await import("../net/k8s/client.ts");
  const { uninstall } = await import("../net/k8s/install.ts");
  const kc = loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context, env: io.env });
  const r = await uninstall(kc, io.log);
  const notOurs = r.notOurs.length ? `; left alone, not ours: ${r.notOurs.join(", ")}` : "";
  io.out(
    [
      `weave uninstalled: ${r.deleted.length} object(s) deleted, ${r.absent.length} already gone${notOurs}`,
      // The init container wrote these on each node; nothing in the cluster can take them back.
      `  left on each node: /etc/cni/net.d/${CONFLIST_FILE}, /opt/cni/bin/${PLUGIN_NAME}, /var/lib/weave, the weave bridge,`,
      `  the vxlan-6784 device and the nftables table weave; remove them there before installing another network`,
      `  (rm the files; ip link del weave; ip link del vxlan-6784; nft delete table ip weave)`,
      "",
    ].join("\n"),
  );
  return 0;
}
