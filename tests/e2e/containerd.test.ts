/**
 * End to end through the runtime kubelet talks to: Debian's containerd 1.6 and its CRI
 * plugin run pod sandboxes on weave-net in a 2-node lab, driven over the CRI's gRPC socket
 * the way kubelet drives it (RunPodSandbox with pod metadata, hostname, log directory, a
 * pod cgroup parent and a pod network namespace; PodSandboxStatus; StopPodSandbox, twice;
 * RemovePodSandbox).
 *
 * How: one containerd per lab node (tests/support/cri/containerd.ts), started inside the
 * node's network namespace with every dir of its own under this run's temp dir, its CNI
 * conf dir the node's (weave's 10-weave.conflist: weave-net, then portmap) and a CNI bin
 * dir of links plus a recording wrapper around the real dist/cni/weave-net. The sandbox
 * ("pause") image is a busybox-static layer written here as an OCI layout tar and
 * imported with ctr (no registry can be reached). The CRI client is @grpc/grpc-js with a
 * hand-written .proto of the few CRI messages used; it runs under Bun over the unix socket.
 *
 * Cleanup, also after a failure: every sandbox this run made is stopped and removed through
 * the CRI while the agents still run (so their addresses go back), then each containerd is
 * killed by its pid, with any shim or sandbox it left and what is mounted under its dir;
 * then what containerd writes outside its dirs (host-leftovers.ts); then the lab.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canRunHost, PLUGIN, REF_PLUGINS } from "../support/env.ts";
import { startLab, type TestLab } from "../support/lab.ts";
import {
  cniCalls,
  ctr,
  fmtRun,
  logTail,
  startContainerd,
  stopContainerd,
  type Containerd,
} from "../support/cri/containerd.ts";
import {
  CriError,
  type ContainerdSandboxInfo,
  type PodSandboxConfig,
  type PodSandboxStatus,
} from "../support/cri/cri-client.ts";
import { HostLeftovers } from "../support/cri/host-leftovers.ts";
import { BUSYBOX, sandboxImageTar } from "../support/cri/oci-image.ts";
import { heldOn, vethsOn } from "../support/cri/weave-node.ts";

const POD_IP_RE = /^10\.(?:3[2-9]|4[0-7])\.\d+\.\d+$/; // in the lab's 10.32.0.0/12
const NETWORKS = ["weave", "cni-loopback"]; // libcni result cache names: weave's conflist, containerd's lo
const RUN_LABEL = "weave.test/run";

function which(cmd: string): boolean {
  return Bun.spawnSync(["sh", "-c", `command -v ${cmd}`], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}

const missing = ["containerd", "ctr", "containerd-shim-runc-v2", "runc", "nsenter"].filter((c) => !which(c));
if (!existsSync(BUSYBOX)) missing.push(`${BUSYBOX} (busybox-static)`);
if (canRunHost && missing.length)
  console.warn(`containerd e2e skipped: needs ${missing.join(", ")} (apt-get install containerd runc busybox-static)`);

type Sandbox = { c: Containerd; id: string; name: string; ip: string; netns: string };

describe.skipIf(!canRunHost || missing.length > 0)("containerd 1.6 (CRI) runs pod sandboxes on weave-net", () => {
  let lab: TestLab | undefined;
  let dir = "";
  const runId = `${process.pid}-${Math.floor(Math.random() * 46656).toString(36)}`;
  const image = `localhost/weave-test-sandbox:${runId}`;
  /** This run's pod cgroups go under it (kubelet's would go under /kubepods). */
  const cgroupRoot = `/weave-e2e-${runId}`;
  /** What containerd writes outside its dirs; made in beforeAll, so it sees what was there before this run. */
  let leftovers: HostLeftovers | undefined;
  const nodes: Containerd[] = [];
  /** Every sandbox this run asked for, removed through the CRI in afterAll if a test did not. */
  const made: { c: Containerd; id: string }[] = [];

  beforeAll(async () => {
    leftovers = new HostLeftovers(cgroupRoot);
    dir = mkdtempSync(join(tmpdir(), `weave-containerd-${process.pid}-`));
    const tarFile = join(dir, "sandbox-image.tar");
    writeFileSync(tarFile, sandboxImageTar(image));
    lab = await startLab({ nodes: 2 });
    for (const [i, node] of lab.state.nodes.entries()) {
      const c = await startContainerd({
        dir: join(dir, `n${i + 1}`),
        netns: node.netns,
        cniConfDir: node.cniConfDir!,
        sandboxImage: image,
        plugin: PLUGIN,
        refPlugins: REF_PLUGINS,
      });
      nodes.push(c);
      const r = ctr(c, ["images", "import", tarFile]);
      if (r.code !== 0) throw new Error(`importing the sandbox image failed:\n${fmtRun(r)}`);
    }
  }, 120_000);

  afterAll(async () => {
    const problems: string[] = [];
    try {
      for (const { c, id } of made) {
        // Stop then remove, as kubelet does. For a sandbox a test already removed, containerd 1.6
        // answers Stop with NOT_FOUND (kubelet ignores that too) and Remove with success.
        const unlessGone = (what: string) => (e: unknown) => {
          if (!(e instanceof CriError && e.code === 5)) problems.push(`${what} ${id}: ${e}`);
        };
        await c.cri.stopPodSandbox(id).catch(unlessGone("StopPodSandbox"));
        await c.cri.removePodSandbox(id).catch(unlessGone("RemovePodSandbox"));
      }
    } finally {
      try {
        for (const c of nodes) problems.push(...(await stopContainerd(c)));
        const ours = made.map(({ c, id }) => ({ socket: c.paths.socket, id }));
        if (leftovers) problems.push(...leftovers.cleanup(ours, NETWORKS));
        if (dir) rmSync(dir, { recursive: true, force: true });
      } finally {
        if (lab) await lab.down();
      }
    }
    if (problems.length) console.warn(`containerd cleanup problems:\n${problems.join("\n")}`);
  }, 120_000);

  /** The daemon's log and its weave-net calls, for failure messages. */
  function context(c: Containerd): string {
    const calls = cniCalls(c).map((k) => `${k.command} ${k.containerId.slice(0, 12)} ${k.netns} -> ${k.code}`);
    return `containerd (${c.netns}) log tail:\n${logTail(c)}\nweave-net calls:\n${calls.join("\n")}`;
  }

  /** A pod's sandbox config as kubelet builds it (with cgroupfs), under this run's cgroup root and label. */
  function podConfig(name: string): PodSandboxConfig {
    const uid = randomUUID();
    const logDirectory = join(dir, "pods", `default_${name}_${uid}`);
    mkdirSync(logDirectory, { recursive: true });
    return {
      metadata: { name, uid, namespace: "default", attempt: 0 },
      hostname: name,
      logDirectory,
      dnsConfig: {
        servers: [],
        searches: ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        options: ["ndots:5"],
      },
      labels: {
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": uid,
        [RUN_LABEL]: runId,
      },
      annotations: { "kubernetes.io/config.source": "api", "kubernetes.io/config.seen": new Date().toISOString() },
      linux: {
        cgroupParent: `${cgroupRoot}/pod${uid}`,
        securityContext: { namespaceOptions: { network: "POD", pid: "CONTAINER", ipc: "POD" } },
      },
    };
  }

  /** PodSandboxStatus, verbose: the status, containerd's sandbox record and the netns path its runtime spec names. */
  async function status(
    c: Containerd,
    id: string,
  ): Promise<{ status: PodSandboxStatus; info: ContainerdSandboxInfo; netns: string }> {
    const r = await c.cri.podSandboxStatus(id);
    const info = JSON.parse(r.info.info ?? "{}") as ContainerdSandboxInfo;
    const namespaces = info.runtimeSpec?.linux?.namespaces ?? [];
    return { status: r.status, info, netns: namespaces.find((n) => n.type === "network")?.path ?? "" };
  }

  async function runSandbox(c: Containerd, name: string): Promise<Sandbox> {
    const config = podConfig(name);
    let id: string;
    try {
      id = await c.cri.runPodSandbox(config);
    } catch (e) {
      throw new Error(`RunPodSandbox ${name} failed: ${e}\n${context(c)}`);
    }
    made.push({ c, id });
    const s = await status(c, id);
    const dump = JSON.stringify(s.status, null, 2);
    expect(s.status.state, dump).toBe("SANDBOX_READY");
    expect(s.status.linux?.namespaces?.options?.network, dump).toBe("POD");
    const ip = s.status.network?.ip ?? "";
    expect(ip, `${dump}\n${context(c)}`).toMatch(POD_IP_RE);
    expect(s.netns, JSON.stringify(s.info.runtimeSpec?.linux, null, 2)).toMatch(/^\/var\/run\/netns\/cni-[0-9a-f-]+$/);
    expect(existsSync(s.netns), s.netns).toBe(true);
    return { c, id, name, ip, netns: s.netns };
  }

  function inPod(sb: Sandbox, cmd: string[]): { code: number; stdout: string; stderr: string } {
    const r = Bun.spawnSync(["nsenter", `--net=${sb.netns}`, ...cmd], { stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  }

  function heldFor(c: Containerd, sb: { id: string; ip: string }): string[] {
    return heldOn(c.netns).filter((l) => l.includes(sb.id) || l.startsWith(`${sb.ip}/`));
  }

  test("each node's containerd is up, RuntimeReady and NetworkReady, with weave's conflist loaded", async () => {
    for (const c of nodes) {
      const v = await c.cri.version();
      expect(v.runtimeName).toBe("containerd");
      expect(v.runtimeApiVersion).toBe("v1");
      const { conditions, info } = await c.cri.status();
      const ready = Object.fromEntries(conditions.map((k) => [k.type, k.status]));
      expect(ready, JSON.stringify(conditions)).toEqual({ RuntimeReady: true, NetworkReady: true });
      expect(info.lastCNILoadStatus, JSON.stringify(info, null, 2)).toBe("OK");
      // go-cni's view: its loopback network, then the one conflist it loaded from conf_dir.
      const cni = JSON.parse(info.cniconfig ?? "{}");
      const nets: { Config: { Name: string; Plugins: { Network: { type: string } }[] } }[] = cni.Networks ?? [];
      const weave = nets.find((n) => n.Config.Name === "weave");
      expect(
        weave?.Config.Plugins.map((p) => p.Network.type),
        info.cniconfig,
      ).toEqual(["weave-net", "portmap"]);
    }
  }, 30_000);

  test("a sandbox on each node gets a weave address; the two ping each other across nodes", async () => {
    const [n1, n2] = nodes as [Containerd, Containerd];
    const a = await runSandbox(n1, "ping-a");
    const b = await runSandbox(n2, "ping-b");
    expect(a.ip).not.toBe(b.ip);

    for (const sb of [a, b]) {
      // The agent of the sandbox's node holds its address under containerd's sandbox id, and
      // names the pod from the K8S_POD_NAMESPACE/K8S_POD_NAME that containerd put in CNI_ARGS.
      const held = heldOn(sb.c.netns);
      expect(
        held.some((l) => l.startsWith(`${sb.ip}/`) && l.includes(sb.id) && l.includes(`default/${sb.name}`)),
        `${sb.c.netns} holds:\n${held.join("\n")}`,
      ).toBe(true);
      // eth0 in the sandbox's netns carries it; containerd recorded weave-net's result.
      const addr = inPod(sb, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
      expect(addr.stdout, `${addr.stdout}${addr.stderr}`).toContain(`inet ${sb.ip}/`);
      const { info } = await status(sb.c, sb.id);
      expect(info.cniResult?.Interfaces?.eth0?.IPConfigs?.[0]?.IP, JSON.stringify(info.cniResult)).toBe(sb.ip);
    }

    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const r = inPod(from, ["ping", "-c", "1", "-W", "2", to.ip]);
      expect(r.code, `ping ${to.ip} from ${from.name} (${from.netns}):\n${r.stdout}${r.stderr}`).toBe(0);
    }

    const listed = await n1.cri.listPodSandbox({ [RUN_LABEL]: runId });
    expect(listed.filter((p) => p.id === a.id).map((p) => p.state)).toEqual(["SANDBOX_READY"]);

    for (const sb of [a, b]) {
      await sb.c.cri.stopPodSandbox(sb.id);
      await sb.c.cri.removePodSandbox(sb.id);
      expect(heldFor(sb.c, sb), context(sb.c)).toEqual([]);
    }
  }, 60_000);

  test("StopPodSandbox releases the address; Stop again and RemovePodSandbox succeed once the netns is gone", async () => {
    for (const c of nodes) {
      const vethsBefore = await vethsOn(c.netns);
      const heldBefore = heldOn(c.netns);
      const sb = await runSandbox(c, `life-${c.netns}`);
      expect(heldFor(c, sb).length, heldOn(c.netns).join("\n")).toBe(1);

      await c.cri.stopPodSandbox(sb.id);
      expect(heldFor(c, sb), `still held after StopPodSandbox\n${context(c)}`).toEqual([]);
      expect(existsSync(sb.netns), `${sb.netns} still there after StopPodSandbox`).toBe(false);
      const stopped = await status(c, sb.id);
      expect(stopped.status.state).toBe("SANDBOX_NOTREADY");
      expect(stopped.status.network?.ip ?? "").toBe("");
      expect(stopped.info.netNamespaceClosed).toBe(true);

      // kubelet stops a sandbox more than once; containerd tears the network down again each
      // time, now with the netns gone (CNI_NETNS empty): weave-net's DEL must succeed.
      await c.cri.stopPodSandbox(sb.id);
      await c.cri.removePodSandbox(sb.id);
      const gone = await c.cri.podSandboxStatus(sb.id).then(
        () => 0,
        (e) => (e instanceof CriError ? e.code : -1),
      );
      expect(gone, "PodSandboxStatus of a removed sandbox must be NOT_FOUND (5)").toBe(5);
      await c.cri.removePodSandbox(sb.id); // idempotent
      expect((await c.cri.listPodSandbox({ [RUN_LABEL]: runId })).map((p) => p.id)).not.toContain(sb.id);

      // What containerd asked of weave-net for this sandbox, and that every call succeeded.
      // containerd 1.6 sends ADD, DEL (Stop), then DEL with CNI_NETNS empty (the second Stop,
      // and Remove, which stops first); it makes no CHECK (nor does kubelet ask for one): one
      // from a later containerd would be allowed here, and must succeed like the rest.
      const calls = cniCalls(c).filter((k) => k.containerId === sb.id);
      const transcript = `${context(c)}\n(${calls.length} calls for ${sb.id.slice(0, 12)})`;
      expect(
        calls.filter((k) => k.code !== 0),
        transcript,
      ).toEqual([]);
      expect(calls.filter((k) => k.command === "ADD" && k.netnsPresent).length, transcript).toBe(1);
      expect(
        calls.some((k) => k.command === "DEL" && k.netnsPresent),
        transcript,
      ).toBe(true);
      expect(
        calls.some((k) => k.command === "DEL" && !k.netnsPresent),
        transcript,
      ).toBe(true);
      expect(
        calls.filter((k) => !["ADD", "DEL", "CHECK"].includes(k.command)),
        transcript,
      ).toEqual([]);

      // Nothing left on the node: veths, allocations; nor containerd's shim socket and libcni cache.
      expect(await vethsOn(c.netns), context(c)).toEqual(vethsBefore);
      expect(heldOn(c.netns)).toEqual(heldBefore);
      expect(leftovers!.left([{ socket: c.paths.socket, id: sb.id }], NETWORKS)).toEqual([]);
    }
  }, 60_000);

  test("RemovePodSandbox of a running sandbox (no Stop first) tears its network down too", async () => {
    const c = nodes[1]!;
    const vethsBefore = await vethsOn(c.netns);
    const sb = await runSandbox(c, "remove-direct");
    await c.cri.removePodSandbox(sb.id);
    expect(heldFor(c, sb), context(c)).toEqual([]);
    expect(existsSync(sb.netns)).toBe(false);
    const calls = cniCalls(c).filter((k) => k.containerId === sb.id);
    expect(
      calls.filter((k) => k.code !== 0),
      context(c),
    ).toEqual([]);
    expect(
      calls.some((k) => k.command === "DEL" && k.netnsPresent),
      context(c),
    ).toBe(true);
    expect(await vethsOn(c.netns)).toEqual(vethsBefore);
  }, 60_000);
});
