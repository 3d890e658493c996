/**
 * Only root on the node can change the network: the agent serves what changes state on a
 * unix socket owned by root with mode 0600, takes the caller's uid (and the pid CNI_NETNS
 * is opened through) from the kernel, and answers a change on TCP 127.0.0.1:6784 with
 * 403 naming the socket. A process of another user cannot connect; made able to (the
 * socket's mode opened on purpose), it is refused by uid.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, statSync } from "node:fs";
import { canRunHost, WEAVE } from "../support/env.ts";
import { startLab, type TestLab } from "../support/lab.ts";

const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

describe.skipIf(!canRunHost)("the agent's root-only socket", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startLab({ nodes: 1, pods: 0 });
  }, 60_000);
  afterAll(async () => {
    await lab?.down();
  }, 60_000);

  /** fetch() from inside the node, as `user` (default root), printing "<status> <body>". */
  const fetchInNode = (url: string, init: string, user: string[] = []) => {
    const script = `const r = await fetch(${JSON.stringify(url)}, ${init}); console.log(r.status, await r.text());`;
    return lab.exec(lab.node, [...user, process.execPath, "-e", script]);
  };

  test("the socket is root's, mode 0600, and the agent reports where it is", () => {
    const st = statSync(lab.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.uid).toBe(0);
    expect(st.mode & 0o777).toBe(0o600);
    const report = JSON.parse(lab.exec(lab.node, [WEAVE, "report"]).stdout);
    expect(report.Socket).toBe(lab.socket);
  });

  test("over TCP a change is refused with 403 naming the socket; reads still work", () => {
    const post = fetchInNode("http://127.0.0.1:6784/ip/tcp-caller", `{ method: "POST" }`);
    expect(post.stdout).toStartWith("403 POST /ip/tcp-caller changes the network");
    expect(post.stdout).toContain(`served only on the agent's unix socket ${lab.socket} (root only)`);
    expect(lab.held().some((l) => l.includes("tcp-caller"))).toBe(false);
    expect(fetchInNode("http://127.0.0.1:6784/status", "{}").stdout).toStartWith("200 ");
  });

  test("root allocates over the socket; another user cannot even connect", () => {
    const asRoot = fetchInNode(
      "http://weave/ip/root-caller",
      `{ method: "POST", unix: ${JSON.stringify(lab.socket)} }`,
    );
    expect(asRoot.stdout).toStartWith("201 10.");
    const init = `{ method: "DELETE", unix: ${JSON.stringify(lab.socket)} }`;
    const asNobody = fetchInNode("http://weave/ip/root-caller", init, NOBODY);
    expect(asNobody.code).not.toBe(0);
    expect(asNobody.stderr).toMatch(/EACCES|Permission denied|permission/i);
    expect(lab.held().some((l) => l.includes("root-caller"))).toBe(true);
  });

  test("let in by the socket's mode, a caller that is not root is refused by the uid the kernel gives", () => {
    chmodSync(lab.socket, 0o666);
    try {
      const init = `{ method: "DELETE", unix: ${JSON.stringify(lab.socket)} }`;
      const r = fetchInNode("http://weave/ip/root-caller", init, NOBODY);
      expect(r.stdout).toMatch(
        /^403 DELETE \/ip\/root-caller: only root may change the network \(caller uid 65534, pid \d+\)/,
      );
      expect(lab.held().some((l) => l.includes("root-caller"))).toBe(true);
      const rm = lab.exec(lab.node, [...NOBODY, WEAVE, "rmpeer", "aa:bb:cc:dd:ee:ff", "--socket", lab.socket]);
      expect(rm.code).not.toBe(0);
      expect(rm.stderr).toContain("only root may change the network (caller uid 65534");
    } finally {
      chmodSync(lab.socket, 0o600);
    }
    const release = fetchInNode(
      "http://weave/ip/root-caller",
      `{ method: "DELETE", unix: ${JSON.stringify(lab.socket)} }`,
    );
    expect(release.stdout).toStartWith("204");
  });
});
