/** The lab's pure parts: `lab pod add` input and the objects the lab registers. */
import { describe, expect, test } from "bun:test";
import { parseLabels, parsePort } from "../../net/lab/changes.ts";
import { agentPodName, nodeObject, podObject } from "../../net/lab/objects.ts";

describe("lab pod add input", () => {
  test("labels: keys with and without a prefix, empty values", () => {
    expect(parseLabels("app=web,example.com/tier=front,empty=")).toEqual({
      app: "web",
      "example.com/tier": "front",
      empty: "",
    });
    expect(parseLabels(undefined)).toEqual({});
  });

  test.each([
    ["app", '--labels "app" is not key=value'],
    ["-x=1", '--labels "-x" is not a label key'],
    ["Bad_/x=1", '--labels "Bad_/x" has a prefix that is not a DNS subdomain'],
    [`a=${"v".repeat(64)}`, "has a value that is not a label value"],
    ["a=1,a=2", '--labels "a" is given twice'],
  ])("labels %p are refused, naming the value", (text, said) => {
    expect(() => parseLabels(text)).toThrow(said);
  });

  test("ports: NAME=PORT/PROTO, TCP by default", () => {
    expect(parsePort("http=80")).toEqual({ name: "http", port: 80, protocol: "TCP" });
    expect(parsePort("dns=53/udp")).toEqual({ name: "dns", port: 53, protocol: "UDP" });
    expect(parsePort("s=9/SCTP")).toEqual({ name: "s", port: 9, protocol: "SCTP" });
  });

  test.each([
    ["http", "is not NAME=PORT/PROTO"],
    ["http=0", "has a port outside 1-65535"],
    ["http=80/ICMP", "has a protocol that is not TCP, UDP or SCTP"],
    ["Http=80", "has a name that is not a port name"],
    ["a-very-long-port-name=80", "has a name that is not a port name"],
    ["80=80", "has a name that is not a port name"],
  ])("port %p is refused, naming the value", (text, said) => {
    expect(() => parsePort(text)).toThrow(`--port "${text}" ${said}`);
  });
});

describe("lab objects", () => {
  test("the agent pod of a node has a stable DaemonSet-style name", () => {
    expect(agentPodName("lab-n1")).toMatch(/^weave-net-[b-z2-9]{5}$/);
    expect(agentPodName("lab-n1")).toBe(agentPodName("lab-n1"));
    expect(agentPodName("lab-n1")).not.toBe(agentPodName("lab-n2"));
  });

  test("a lab node is a Node with its underlay address as InternalIP", () => {
    const node = { name: "lab-n2", netns: "lab-n2", ip: "198.18.0.12", agentPid: 1, dataDir: "/x" };
    const info = { kernelVersion: "6.18", architecture: "amd64", memoryKi: 1024, cpus: 2 };
    const n = nodeObject(node, info);
    expect(n.status?.addresses).toEqual([
      { type: "InternalIP", address: "198.18.0.12" },
      { type: "Hostname", address: "lab-n2" },
    ]);
    expect(n.metadata?.labels?.["kubernetes.io/hostname"]).toBe("lab-n2");
  });

  test("a lab pod names its ports on its container", () => {
    const p = podObject({
      name: "web",
      namespace: "shop",
      node: "lab-n1",
      labels: { app: "web" },
      ports: [{ name: "http", port: 80, protocol: "TCP" }],
    });
    expect(p.spec?.nodeName).toBe("lab-n1");
    expect(p.spec?.containers[0]?.ports).toEqual([{ name: "http", containerPort: 80, protocol: "TCP" }]);
  });
});
