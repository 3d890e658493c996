/** The ConfigMap compare-and-swap that lets exactly one peer take over a removed peer's space. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { claimReclaim, RECLAIM_ANNOTATION } from "../../net/k8s/reclaim-lock.ts";
import { startApiServer, type ApiServer } from "../../net/lab/api-server.ts";

describe("reclaim claims in the weave-net ConfigMap", () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await startApiServer();
  });
  afterAll(() => api?.stop());

  test("the first claim creates the ConfigMap; the same heir may claim again, another may not", async () => {
    expect(await claimReclaim(api.kubeConfig, "dead-1", "heir-a")).toBe(true);
    const cm = api.store.get("v1", "ConfigMap", "weave-net", "kube-system") as {
      metadata: { annotations: Record<string, string> };
    };
    expect(JSON.parse(cm.metadata.annotations[RECLAIM_ANNOTATION]!)).toEqual({ "dead-1": "heir-a" });
    expect(await claimReclaim(api.kubeConfig, "dead-1", "heir-a")).toBe(true);
    expect(await claimReclaim(api.kubeConfig, "dead-1", "heir-b")).toBe(false);
  });

  test("of many racing heirs exactly one wins, and the others' writes never erase it", async () => {
    const heirs = Array.from({ length: 8 }, (_, i) => `heir-${i}`);
    const results = await Promise.all(heirs.map((h) => claimReclaim(api.kubeConfig, "dead-2", h)));
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = heirs[results.indexOf(true)]!;
    const cm = api.store.get("v1", "ConfigMap", "weave-net", "kube-system") as {
      metadata: { annotations: Record<string, string> };
    };
    expect(JSON.parse(cm.metadata.annotations[RECLAIM_ANNOTATION]!)).toEqual({ "dead-1": "heir-a", "dead-2": winner });
    // the losers were refused by resourceVersion (409), not overwritten
    expect(api.requests.some((r) => r.method === "PUT" && r.path.endsWith("/configmaps/weave-net"))).toBe(true);
  });

  test("an unreachable API server is an error, and nothing is claimed", async () => {
    await api.down();
    await expect(claimReclaim(api.kubeConfig, "dead-3", "heir-a")).rejects.toBeDefined();
    await api.up();
    expect(await claimReclaim(api.kubeConfig, "dead-3", "heir-z")).toBe(true);
  });
});
