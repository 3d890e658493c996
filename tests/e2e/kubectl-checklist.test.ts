/**
 * The seed's troubleshooting checklist, verbatim, with the real kubectl on a 3-node lab
 * made by `weave lab up` (the CLI, as a user runs it), each command's output checked:
 *   kubectl get pods -n kube-system -o wide    one weave-net pod per node, all containers ready
 *   kubectl logs <weave-pod> -c weave -n kube-system
 *   kubectl get daemonset -n kube-system
 *   kubectl get nodes
 *   kubectl get pods -A -o wide
 *   kubectl exec <pod> -- ip route
 *   kubectl exec <pod> -- ping <ip>
 * and a pod's life through kubectl: `kubectl run` (the lab schedules and wires it), then
 * `kubectl delete pod` (CNI DEL releases its address).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { labDown } from "../../net/lab/lab.ts";
import { inNs } from "../../net/lab/plugin.ts";
import { type LabState, readLab } from "../../net/lab/state.ts";
import { canRunHost, uniqueName, WEAVE } from "../support/env.ts";
import { tools } from "../support/lab.ts";
import { eventually } from "../support/wait.ts";

const KUBECTL = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].find((p) => existsSync(p));
if (canRunHost && !KUBECTL) console.warn("kubectl checklist skipped: no kubectl (scripts/setup.sh installs one)");

describe.skipIf(!canRunHost || !KUBECTL)("the seed's kubectl checklist on a lab", () => {
  const name = uniqueName("k");
  let lab: LabState;
  const kubectl = (...args: string[]) => {
    const env = { ...process.env, KUBECONFIG: lab.kubeconfig!, NO_COLOR: "1" };
    const r = Bun.spawnSync([KUBECTL!, ...args], { env, stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  /** A table's rows as objects keyed by its header (columns split on runs of 2+ spaces). */
  const rows = (out: string) => {
    const [header, ...lines] = out.trim().split("\n");
    const keys = header!.split(/\s{2,}/);
    return lines.map((l) => Object.fromEntries(l.split(/\s{2,}/).map((cell, i) => [keys[i], cell])));
  };

  beforeAll(() => {
    const r = Bun.spawnSync([WEAVE, "lab", "up", "--name", name], { env: { ...process.env, NO_COLOR: "1" } });
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toContain(`export KUBECONFIG=/run/weave-lab/${name}/kubeconfig`);
    lab = readLab(name)!;
  }, 90_000);
  afterAll(async () => {
    if (readLab(name)) await labDown(name, tools);
  }, 60_000);

  const weavePods = () => rows(kubectl("get", "pods", "-n", "kube-system", "-o", "wide").out);

  test("kubectl get pods -n kube-system -o wide: one weave-net pod per node, every container ready", () => {
    const r = kubectl("get", "pods", "-n", "kube-system", "-o", "wide");
    expect(r.code, r.err).toBe(0);
    const ds = JSON.parse(kubectl("get", "daemonset", "weave-net", "-n", "kube-system", "-o", "json").out);
    const containers = ds.spec.template.spec.containers.length;
    const pods = rows(r.out);
    expect(pods.map((p) => p.NODE).sort()).toEqual(lab.nodes.map((n) => n.name).sort());
    for (const p of pods) {
      expect(p.NAME).toMatch(/^weave-net-[a-z0-9]{5}$/);
      expect(p.READY).toBe(`${containers}/${containers}`);
      expect(p.STATUS).toBe("Running");
      expect(p.IP).toBe(lab.nodes.find((n) => n.name === p.NODE)!.ip);
    }
  });

  test("kubectl logs <weave-pod> -c weave -n kube-system: that node's agent log", () => {
    const pod = weavePods().find((p) => p.NODE === `${name}-n2`)!;
    const r = kubectl("logs", pod.NAME!, "-c", "weave", "-n", "kube-system");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("weave-agent:");
    expect(r.out).toContain("ready: bridge weave");
    expect(r.out).toContain(`(${name}-n2) at 198.18.0.12`);
  });

  test("kubectl get daemonset -n kube-system: weave-net desired, current and ready on every node", () => {
    const r = kubectl("get", "daemonset", "-n", "kube-system");
    expect(r.code, r.err).toBe(0);
    const [ds] = rows(r.out);
    expect(ds).toMatchObject({ NAME: "weave-net", DESIRED: "3", CURRENT: "3", READY: "3", "UP-TO-DATE": "3" });
  });

  test("kubectl get nodes: every node Ready", () => {
    const r = kubectl("get", "nodes");
    expect(r.code, r.err).toBe(0);
    const nodes = rows(r.out);
    expect(nodes.map((n) => n.NAME).sort()).toEqual(lab.nodes.map((n) => n.name).sort());
    for (const n of nodes) expect(n.STATUS).toBe("Ready");
  });

  test("kubectl get pods -A -o wide: every pod Running with its address and node", () => {
    const r = kubectl("get", "pods", "-A", "-o", "wide");
    expect(r.code, r.err).toBe(0);
    const listed = rows(r.out).filter((p) => p.NAMESPACE === "default");
    expect(listed.map((p) => p.NAME).sort()).toEqual(lab.pods.map((p) => p.name).sort());
    for (const p of listed) {
      const mine = lab.pods.find((x) => x.name === p.NAME)!;
      expect(p).toMatchObject({ READY: "1/1", STATUS: "Running", IP: mine.ip, NODE: mine.node });
    }
  });

  test("kubectl exec <pod> -- ip route: the default route via the node's bridge", () => {
    const pod = lab.pods[0]!;
    const r = kubectl("exec", pod.name, "--", "ip", "route");
    expect(r.code, r.err).toBe(0);
    const bridge = inNs(pod.node, ["ip", "-4", "-o", "addr", "show", "dev", "weave"]).stdout;
    const bridgeIp = /inet (\S+)\//.exec(bridge)![1]!;
    expect(r.out).toContain(`default via ${bridgeIp} dev eth0`);
    expect(r.out).toContain("10.32.0.0/12 dev eth0");
  });

  test("kubectl exec <pod> -- ping <ip>: across nodes; a failing command's exit code comes back", () => {
    const from = lab.pods.find((p) => p.node === `${name}-n1`)!;
    const to = lab.pods.find((p) => p.node === `${name}-n3`)!;
    const r = kubectl("exec", from.name, "--", "ping", "-c", "1", "-W", "2", to.ip);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("1 received");
    const bad = kubectl("exec", from.name, "--", "ping", "-c", "1", "-W", "1", "10.47.255.254");
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("command terminated with exit code 1");
  });

  test("kubectl run, then kubectl delete pod: scheduled, wired, and its address released", async () => {
    expect(kubectl("run", "probe", "--image=busybox", "--", "sleep", "3600").code).toBe(0);
    const running = () => rows(kubectl("get", "pod", "probe", "-o", "wide").out)[0];
    expect(await eventually(() => running()?.STATUS === "Running")).toBe(true);
    const { IP: ip, NODE: node } = running()!;
    expect(ip).toMatch(/^10\./);
    expect(kubectl("describe", "pod", "probe").out).toContain(`Successfully assigned default/probe to ${node}`);
    const held = () => inNs(node!, [WEAVE, "status", "ipam"]).stdout;
    expect(held()).toContain("default/probe");
    const d = kubectl("delete", "pod", "probe");
    expect(d.code, d.err).toBe(0);
    expect(d.out).toContain('pod "probe" deleted');
    expect(kubectl("get", "pod", "probe").err).toContain('pods "probe" not found');
    expect(held()).not.toContain("default/probe");
  }, 60_000);
});
