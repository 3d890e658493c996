/**
 * The cluster-wide guard on taking over a removed peer's address space: a compare-and-
 * swap on the `weave-net` ConfigMap in kube-system. Its annotation
 * `weave.works/reclaimed` maps each removed peer to the peer that took its space. A
 * would-be heir writes itself there with a replace carrying the resourceVersion it
 * read; the API server refuses (409) a replace based on a stale read, so of two peers
 * racing, exactly one wins, and the loser sees the winner's name on its next read.
 */
import { ApiException, CoreV1Api, type KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import { LABELS } from "../../manifests/rbac.ts";

export const RECLAIM_ANNOTATION = "weave.works/reclaimed";
const NAMESPACE = "kube-system";
const NAME = "weave-net";

const code = (e: unknown) => (e instanceof ApiException ? e.code : undefined);

/**
 * May `heir` take over `dead`'s space? True if it already holds the claim or wins it
 * now; false if another peer holds it. Throws when the API server cannot be reached
 * (the caller retries later; nothing is taken meanwhile).
 */
export async function claimReclaim(kc: KubeConfig, dead: string, heir: string): Promise<boolean> {
  const api = kc.makeApiClient(CoreV1Api);
  for (let attempt = 0; attempt < 10; attempt++) {
    let cm: V1ConfigMap | undefined;
    try {
      cm = await api.readNamespacedConfigMap({ name: NAME, namespace: NAMESPACE });
    } catch (e) {
      if (code(e) !== 404) throw e;
    }
    const claims = JSON.parse(cm?.metadata?.annotations?.[RECLAIM_ANNOTATION] ?? "{}") as Record<string, string>;
    if (claims[dead] !== undefined) return claims[dead] === heir;
    claims[dead] = heir;
    const annotations = { ...cm?.metadata?.annotations, [RECLAIM_ANNOTATION]: JSON.stringify(claims) };
    try {
      if (cm) {
        await api.replaceNamespacedConfigMap({
          name: NAME,
          namespace: NAMESPACE,
          body: { ...cm, metadata: { ...cm.metadata, annotations } },
        });
      } else {
        await api.createNamespacedConfigMap({
          namespace: NAMESPACE,
          body: {
            apiVersion: "v1",
            kind: "ConfigMap",
            metadata: { name: NAME, namespace: NAMESPACE, labels: LABELS, annotations },
          },
        });
      }
      return true;
    } catch (e) {
      // Someone else wrote in between: read again and look.
      if (code(e) === 409) continue;
      throw e;
    }
  }
  throw new Error(`could not update ConfigMap ${NAMESPACE}/${NAME}: too many conflicting writers`);
}
