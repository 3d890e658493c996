/**
 * The agent's CNI work against an in-memory host: ADD/DEL/CHECK/GC/STATUS, rollback when
 * any step of ADD fails, and the HTTP API in front of it.
 */
import { describe, expect, test } from "bun:test";
import { Agent, EXPOSE_ID } from "../../net/agent/agent.ts";
import { type Caller, handleApi } from "../../net/agent/api.ts";
import { hostVethName, PENDING_GROUP } from "../../net/agent/cni-exec.ts";
import { parseCidr } from "../../net/cidr.ts";
import { parseNetConf } from "../../net/cni/config.ts";
import { CniCode } from "../../net/cni/errors.ts";
import { resultForVersion, type Result } from "../../net/cni/result.ts";
import type { CniRequest } from "../../net/cni/wire.ts";
import { FakeWorld, memoryStore } from "../support/fake-host.ts";

function setup() {
  const world = new FakeWorld();
  const host = world.host("root");
  world
    .ns("root")
    .links.set("eth0", { index: 99, name: "eth0", mtu: 1500, mac: "02:aa:00:00:00:01", up: true, group: 0 });
  const store = memoryStore();
  const logs: string[] = [];
  const deferred: (() => void)[] = [];
  const agent = new Agent(
    { range: parseCidr("10.32.0.0/12"), bridge: "weave", nickname: "n1", dataDir: "/tmp/x" },
    {
      host,
      openHost: (ns) => world.host(ns),
      checkNetns: (p) =>
        p.startsWith("/proc/") || world.namespaces.has(p) ? { ok: true } : { ok: false, reason: "does not exist" },
      store,
      log: (m) => logs.push(m),
      defer: (fn) => deferred.push(fn),
    },
  );
  agent.start();
  const req = (
    command: CniRequest["command"],
    o: Omit<Partial<CniRequest>, "conf"> & { conf?: Record<string, unknown> } = {},
  ): CniRequest => ({
    command,
    containerId: o.containerId ?? "c1",
    ifname: o.ifname ?? "eth0",
    netns: o.netns ?? "/ns/p1",
    args: o.args ?? { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web" },
    conf: parseNetConf(
      JSON.stringify({ cniVersion: "1.1.0", name: "weave", type: "weave-net", ...(o.conf ?? {}) }),
      command,
    ),
  });
  world.ns("/ns/p1");
  world.ns("/ns/p2");
  const flush = () => {
    for (const f of deferred.splice(0)) f();
  };
  return { world, host, store, agent, req, logs, flush };
}

describe("agent start", () => {
  test("creates the bridge with its own address from the range and the underlay MTU - 50", () => {
    const { agent, host, store } = setup();
    const br = host.link("weave")!;
    expect(br.mtu).toBe(1450);
    expect(host.addrs(br.index)).toEqual([{ index: br.index, cidr: "10.32.0.1/12" }]);
    expect(br.mac).toBe("0a:58:0a:20:00:01");
    expect(agent.ready).toBe(true);
    expect(store.getMeta("range")).toBe("10.32.0.0/12");
    expect(agent.allocator.lookup(EXPOSE_ID).length).toBe(1);
  });

  test("refuses a data dir holding allocations from another range", () => {
    const store = memoryStore();
    store.setMeta("range", "10.40.0.0/16");
    store.put({ containerId: "c", ifname: "eth0", address: 1, createdAt: 0 });
    const world = new FakeWorld();
    const agent = new Agent(
      { range: parseCidr("10.32.0.0/12"), bridge: "weave", nickname: "n", dataDir: "/d" },
      { host: world.host(), openHost: (n) => world.host(n), checkNetns: () => ({ ok: true }), store, log: () => {} },
    );
    expect(() => agent.start()).toThrow(/10\.40\.0\.0\/16.*10\.32\.0\.0\/12/);
  });

  test("reconcile puts back a bridge deleted by hand", () => {
    const { agent, host } = setup();
    host.delLink("weave");
    agent.reconcile();
    expect(host.link("weave")?.up).toBe(true);
    expect(host.addrs(host.link("weave")!.index)[0]!.cidr).toBe("10.32.0.1/12");
  });
});

describe("ADD", () => {
  test("wires the pod: veth on the bridge, address, default route via the bridge", () => {
    const { agent, world, host, req } = setup();
    const r = agent.cni.run(req("ADD"));
    expect(r.ok).toBe(true);
    const res = (r as { result: Result }).result;
    expect(res.ips).toEqual([{ address: "10.32.0.2/12", gateway: "10.32.0.1", interface: 2 }]);
    expect(res.interfaces[2]).toMatchObject({ name: "eth0", sandbox: "/ns/p1", mac: "0a:58:0a:20:00:02", mtu: 1450 });
    const veth = host.link(hostVethName("c1", "eth0"))!;
    expect(veth.master).toBe(host.link("weave")!.index);
    expect(veth.up).toBe(true);
    const pod = world.ns("/ns/p1");
    const eth0 = pod.links.get("eth0")!;
    expect(eth0.up).toBe(true);
    expect(pod.addrs).toEqual([{ index: eth0.index, cidr: "10.32.0.2/12" }]);
    expect(pod.routes[0]).toMatchObject({ dst: "0.0.0.0/0", gw: "10.32.0.1", dev: eth0.index });
    expect(agent.allocator.lookup("c1")[0]!.pod).toBe("default/web");
  });

  test("honours the config's mtu", () => {
    const { agent, world, req } = setup();
    agent.cni.run(req("ADD", { conf: { mtu: 1400 } }));
    expect(world.ns("/ns/p1").links.get("eth0")!.mtu).toBe(1400);
  });

  test("a second ADD for an existing ifname fails with 4 and leaves the first attachment alone", () => {
    const { agent, world, host, req } = setup();
    agent.cni.run(req("ADD"));
    const r = agent.cni.run(req("ADD"));
    expect(r).toMatchObject({ ok: false, code: CniCode.InvalidEnvironment });
    expect(world.ns("/ns/p1").links.get("eth0")).toBeDefined();
    expect(host.link(hostVethName("c1", "eth0"))).toBeDefined();
    expect(agent.allocator.lookup("c1").length).toBe(1);
  });

  test("a netns that does not exist is code 4 and allocates nothing", () => {
    const { agent, req } = setup();
    const r = agent.cni.run(req("ADD", { netns: "/ns/nope" }));
    expect(r).toMatchObject({ ok: false, code: CniCode.InvalidEnvironment });
    expect((r as { msg: string }).msg).toContain("/ns/nope");
    expect(agent.podEntries()).toEqual([]);
  });

  test("no bridge yet: try again later (11)", () => {
    const { agent, host, req } = setup();
    host.delLink("weave");
    expect(agent.cni.run(req("ADD"))).toMatchObject({ ok: false, code: CniCode.TryAgainLater });
    expect(agent.podEntries()).toEqual([]);
  });

  for (const step of ["addVeth", "setLink", "setHairpin", "addAddr", "addRoute"]) {
    test(`when ${step} fails, everything is undone: no address held, no veth, no pod interface`, () => {
      const { agent, world, host, req } = setup();
      world.failOn(step);
      const r = agent.cni.run(req("ADD"));
      expect(r.ok).toBe(false);
      expect((r as { code: number }).code).toBe(CniCode.Internal);
      expect((r as { msg: string }).msg).toContain(step);
      expect(agent.podEntries()).toEqual([]);
      expect(host.links().filter((l) => l.name.startsWith("vethwepl"))).toEqual([]);
      expect(world.ns("/ns/p1").links.has("eth0")).toBe(false);
      // and the next ADD works
      expect(agent.cni.run(req("ADD")).ok).toBe(true);
    });
  }
});

describe("DEL", () => {
  test("releases the address, retires the veth, and is idempotent", () => {
    const { agent, host, req, flush, world } = setup();
    agent.cni.run(req("ADD"));
    const name = hostVethName("c1", "eth0");
    expect(agent.cni.run(req("DEL")).ok).toBe(true);
    expect(agent.podEntries()).toEqual([]);
    const v = host.link(name)!;
    expect(v.up).toBe(false);
    expect(v.group).toBe(PENDING_GROUP);
    // CNI_IFNAME is free in the pod at once; what is left there is down and unaddressed
    const pod = world.ns("/ns/p1");
    expect(pod.links.has("eth0")).toBe(false);
    const renamed = [...pod.links.values()].find((l) => l.name.startsWith("wdel"))!;
    expect(renamed.up).toBe(false);
    expect(pod.addrs.filter((a) => a.index === renamed.index)).toEqual([]);
    expect(agent.cni.run(req("DEL")).ok).toBe(true);
    flush();
    expect(host.link(name)).toBeUndefined();
    expect(agent.cni.run(req("DEL", { netns: "" })).ok).toBe(true);
  });

  test("with the netns gone it still releases the address", () => {
    const { agent, world, req } = setup();
    agent.cni.run(req("ADD"));
    world.namespaces.delete("/ns/p1");
    expect(agent.cni.run(req("DEL")).ok).toBe(true);
    expect(agent.podEntries()).toEqual([]);
  });

  test("an ADD right after DEL of the same attachment deletes the pending veth first", () => {
    const { agent, world, req } = setup();
    agent.cni.run(req("ADD"));
    agent.cni.run(req("DEL"));
    expect(world.ns("/ns/p1").links.has("eth0")).toBe(false);
    const again = agent.cni.run(req("ADD"));
    expect(again.ok, JSON.stringify(again)).toBe(true);
    expect(world.calls).toContain("delLinkGroup");
  });
});

describe("CHECK", () => {
  test("passes on what ADD made and fails, code 100, on each kind of drift", () => {
    const { agent, world, host, req } = setup();
    const add = agent.cni.run(req("ADD")) as { ok: true; result: Result };
    const prevResult = resultForVersion(add.result, "1.0.0");
    const check = () => agent.cni.run(req("CHECK", { conf: { cniVersion: "1.0.0", prevResult } }));
    expect(check()).toEqual({ ok: true });

    const pod = world.ns("/ns/p1");
    const route = pod.routes.pop()!;
    expect(check()).toMatchObject({ ok: false, code: CniCode.CheckFailed });
    pod.routes.push(route);

    const addr = pod.addrs.pop()!;
    expect((check() as { msg: string }).msg).toContain("10.32.0.2/12");
    pod.addrs.push(addr);

    host.setLink(host.link(hostVethName("c1", "eth0"))!.index, { up: false });
    expect((check() as { msg: string }).msg).toContain("vethwepl");
    host.setLink(host.link(hostVethName("c1", "eth0"))!.index, { up: true });

    agent.allocator.release("c1", "eth0");
    expect((check() as { msg: string }).msg).toContain("holds no address");
  });

  test("fails when prevResult does not list the interface", () => {
    const { agent, req } = setup();
    agent.cni.run(req("ADD"));
    const r = agent.cni.run(
      req("CHECK", { conf: { cniVersion: "1.0.0", prevResult: { interfaces: [], ips: [], routes: [] } } }),
    );
    expect(r).toMatchObject({ ok: false, code: CniCode.CheckFailed });
  });
});

describe("GC and STATUS", () => {
  test("GC releases what is not listed and removes stale veths, keeping the bridge address", () => {
    const { agent, host, req, flush } = setup();
    agent.cni.run(req("ADD", { containerId: "keep", netns: "/ns/p1" }));
    agent.cni.run(req("ADD", { containerId: "stale", netns: "/ns/p2" }));
    const r = agent.cni.run(
      req("GC", { conf: { "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }] } }),
    );
    expect(r.ok).toBe(true);
    expect(agent.podEntries().map((e) => e.containerId)).toEqual(["keep"]);
    expect(agent.allocator.lookup(EXPOSE_ID).length).toBe(1);
    flush();
    expect(host.link(hostVethName("stale", "eth0"))).toBeUndefined();
    expect(host.link(hostVethName("keep", "eth0"))).toBeDefined();
  });

  test("STATUS: ok when ready; 51 when the bridge is gone", () => {
    const { agent, host, req } = setup();
    expect(agent.cni.run(req("STATUS"))).toEqual({ ok: true });
    host.delLink("weave");
    expect(agent.cni.run(req("STATUS"))).toMatchObject({ ok: false, code: CniCode.NotAvailableLimited });
  });
});

describe("HTTP API", () => {
  const ROOT = { pid: 4242, uid: 0 };
  /** A call over the unix socket (root, unless `caller` says otherwise) or, with `caller: null`, over TCP. */
  const call = async (agent: Agent, method: string, path: string, body?: unknown, caller: Caller | null = ROOT) => {
    const r = await handleApi(
      agent,
      new Request(`http://127.0.0.1:6784${path}`, {
        method,
        ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
      }),
      caller ? { caller, socket: "/run/weave/weave.sock" } : {},
    );
    return { status: r.status, text: await r.text() };
  };

  test("over TCP only what reads is answered: every change is 403 and names the socket", async () => {
    const { agent, req } = setup();
    const changes: [string, string, unknown?][] = [
      ["POST", "/ip/abc"],
      ["DELETE", "/ip/abc"],
      ["DELETE", "/peer/aa:bb:cc:dd:ee:ff"],
      ["POST", "/cni", req("ADD")],
    ];
    for (const [method, path, body] of changes) {
      const r = await call(agent, method, path, body, null);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.text).toContain("served only on the agent's unix socket /run/weave/weave.sock (root only)");
    }
    expect(agent.allocator.lookup("abc")).toEqual([]);
    expect((await call(agent, "GET", "/status", undefined, null)).status).toBe(200);
    expect((await call(agent, "GET", "/ip", undefined, null)).status).toBe(200);
  });

  test("on the socket, a caller that is not root is refused; the CNI call takes the kernel's pid", async () => {
    const { agent, req } = setup();
    const nobody = { pid: 77, uid: 65534 };
    const refused = await call(agent, "POST", "/ip/abc", undefined, nobody);
    expect(refused).toEqual({
      status: 403,
      text: "POST /ip/abc: only root may change the network (caller uid 65534, pid 77)\n",
    });
    const seen: (number | undefined)[] = [];
    const run = agent.cni.run.bind(agent.cni);
    agent.cni.run = (r) => {
      seen.push(r.pid);
      return run(r);
    };
    await call(agent, "POST", "/cni", { ...req("STATUS"), pid: 1 });
    expect(seen).toEqual([ROOT.pid]);
  });

  test("/status is 200 when ready and 503 before", async () => {
    const { agent } = setup();
    expect((await call(agent, "GET", "/status")).status).toBe(200);
    agent.ready = false;
    const r = await call(agent, "GET", "/status");
    expect(r.status).toBe(503);
    expect(r.text).toContain("Status: starting");
  });

  test("/ip: allocate (201, then 200), look up, list, release", async () => {
    const { agent } = setup();
    const a = await call(agent, "POST", "/ip/abc");
    expect(a).toEqual({ status: 201, text: "10.32.0.2/12\n" });
    expect((await call(agent, "POST", "/ip/abc")).status).toBe(200);
    expect((await call(agent, "GET", "/ip/abc")).text).toBe("10.32.0.2/12\n");
    expect(JSON.parse((await call(agent, "GET", "/ip")).text)).toEqual({
      owned: [{ containerid: "abc", ifname: "eth0", addrs: ["10.32.0.2/12"] }],
    });
    expect((await call(agent, "DELETE", "/ip/abc")).status).toBe(204);
    expect((await call(agent, "GET", "/ip/abc")).status).toBe(404);
  });

  test("bad ids, bodies and paths are refused", async () => {
    const { agent } = setup();
    expect((await call(agent, "POST", "/ip/a%20b")).status).toBe(400);
    expect((await call(agent, "POST", "/cni", "{nope")).status).toBe(400);
    expect((await call(agent, "POST", "/cni", { command: 1 })).status).toBe(400);
    expect((await call(agent, "GET", "/nope")).status).toBe(404);
    expect((await call(agent, "PUT", "/ip/abc")).status).toBe(405);
  });

  test("/report has Weave's IPAM fields", async () => {
    const { agent } = setup();
    const r = JSON.parse((await call(agent, "GET", "/report")).text);
    expect(r.Ready).toBe(true);
    expect(r.IPAM).toMatchObject({ Range: "10.32.0.0/12", RangeNumIPs: (1 << 20) - 2, ActiveIPs: 1 });
  });
});
