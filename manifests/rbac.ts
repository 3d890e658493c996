/**
 * Who the agent is to the API server: the ServiceAccount `weave-net` and what it may do.
 * Cluster-wide it reads nodes (peers), pods and namespaces, and network policies (for
 * the policy work to come); it patches nodes/status (the NetworkUnavailable condition)
 * and creates events and patches their counts (setup-cni's refusal, the agent's Node
 * events; `kubectl describe node` shows them). In
 * kube-system it may read and update only the `weave-net` ConfigMap, and create it.
 */
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ObjectMeta,
  V1Role,
  V1RoleBinding,
  V1ServiceAccount,
} from "@kubernetes/client-node";
import { MANAGED_BY, NAME, NAMESPACE } from "./settings.ts";

const RBAC = "rbac.authorization.k8s.io";

/** The labels every object of ours carries; `managed-by` is what uninstall checks. */
export const LABELS: Readonly<Record<string, string>> = {
  name: NAME,
  "app.kubernetes.io/name": NAME,
  "app.kubernetes.io/managed-by": MANAGED_BY,
};

/** Metadata of one of our objects (namespaced unless `cluster`). */
export function meta(cluster = false, name = NAME): V1ObjectMeta {
  return { name, ...(cluster ? {} : { namespace: NAMESPACE }), labels: { ...LABELS } };
}

export function serviceAccount(): V1ServiceAccount {
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: meta() };
}

export function clusterRole(): V1ClusterRole {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: "ClusterRole",
    metadata: meta(true),
    rules: [
      { apiGroups: [""], resources: ["nodes", "pods", "namespaces"], verbs: ["get", "list", "watch"] },
      { apiGroups: ["networking.k8s.io"], resources: ["networkpolicies"], verbs: ["get", "list", "watch"] },
      { apiGroups: [""], resources: ["nodes/status"], verbs: ["patch"] },
      { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
    ],
  };
}

export function clusterRoleBinding(): V1ClusterRoleBinding {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: "ClusterRoleBinding",
    metadata: meta(true),
    roleRef: { apiGroup: RBAC, kind: "ClusterRole", name: NAME },
    subjects: [{ kind: "ServiceAccount", name: NAME, namespace: NAMESPACE }],
  };
}

export function role(): V1Role {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: "Role",
    metadata: meta(),
    rules: [
      { apiGroups: [""], resources: ["configmaps"], resourceNames: [NAME], verbs: ["get", "update", "patch"] },
      // create cannot be limited by name (the object does not exist yet)
      { apiGroups: [""], resources: ["configmaps"], verbs: ["create"] },
    ],
  };
}

export function roleBinding(): V1RoleBinding {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: "RoleBinding",
    metadata: meta(),
    roleRef: { apiGroup: RBAC, kind: "Role", name: NAME },
    subjects: [{ kind: "ServiceAccount", name: NAME, namespace: NAMESPACE }],
  };
}
