/** The agent's NetworkUnavailable=False report, against the API-server stand-in. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { markNetworkAvailable, networkAvailablePatch } from "../../net/k8s/node-status.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";

describe("node condition", () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await startApiServer();
    api.store.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n1" },
      status: {
        conditions: [
          { type: "Ready", status: "True" },
          { type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" },
        ],
      },
    });
  });
  afterAll(() => api?.stop());

  test("sets NetworkUnavailable=False (WeaveIsUp) with a strategic-merge patch of the status, keeping the others", async () => {
    await markNetworkAvailable(api.kubeConfig, "n1", new Date("2026-11-23T10:00:00.123Z"));
    const node = api.store.get("v1", "Node", "n1") as {
      status: { conditions: { type: string; status: string; reason?: string; lastTransitionTime?: string }[] };
    };
    const byType = Object.fromEntries(node.status.conditions.map((c) => [c.type, c]));
    expect(byType.NetworkUnavailable).toMatchObject({
      status: "False",
      reason: "WeaveIsUp",
      lastTransitionTime: "2026-11-23T10:00:00Z",
    });
    expect(byType.Ready!.status).toBe("True");
    const req = api.requests.find((r) => r.method === "PATCH" && r.path === "/api/v1/nodes/n1/status");
    expect(req?.contentType).toContain("strategic-merge-patch+json");
  });

  test("an unreachable API server is an error the caller can retry", async () => {
    await api.down();
    await expect(markNetworkAvailable(api.kubeConfig, "n1")).rejects.toBeDefined();
    await api.up();
    await markNetworkAvailable(api.kubeConfig, "n1");
  });

  test("the patch body", () => {
    expect(networkAvailablePatch(new Date("2026-01-02T03:04:05.000Z"))).toEqual({
      status: {
        conditions: [
          {
            type: "NetworkUnavailable",
            status: "False",
            reason: "WeaveIsUp",
            message: "Weave pod has set this",
            lastTransitionTime: "2026-01-02T03:04:05Z",
            lastHeartbeatTime: "2026-01-02T03:04:05Z",
          },
        ],
      },
    });
  });
});
