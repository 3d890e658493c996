/**
 * The columns and cells of each kind, as the API's printers compute them
 * (kubernetes pkg/printers/internalversion/printers.go): pods (READY from the container
 * statuses, STATUS as the printer derives it, Terminating included), nodes, namespaces,
 * daemonsets, services, endpoints, configmaps, secrets, serviceaccounts, events,
 * networkpolicies, leases and the RBAC kinds. The server computes every column; `priority: 1`
 * columns are the ones kubectl shows only with `-o wide`.
 */
import type { Doc } from "./json.ts";
import { AGE, type Column, col, formatLabelSelector, formatLabels, NAME, since } from "./print-format.ts";
import { NODE_COLUMNS, nodeRow, POD_COLUMNS, podRow } from "./print-pods.ts";

const containerCells = (containers: Doc[] = []) => [
  containers.map((c) => c.name).join(","),
  containers.map((c) => c.image).join(","),
];

function servicePorts(ports: Doc[] = []): string {
  const texts = ports.map((p) =>
    p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol ?? "TCP"}` : `${p.port}/${p.protocol ?? "TCP"}`,
  );
  return texts.length ? texts.join(",") : "<none>";
}

function serviceExternalIP(spec: Doc = {}): string {
  const external = (spec.externalIPs ?? []) as string[];
  if (spec.type === "ExternalName") return spec.externalName ?? "<none>";
  if (spec.type === "LoadBalancer") return external.length ? external.join(",") : "<pending>";
  return external.length ? external.join(",") : "<none>";
}

function endpointsText(subsets: Doc[] = []): string {
  const all = subsets.flatMap((s) =>
    ((s.addresses ?? []) as Doc[]).flatMap((a) =>
      ((s.ports ?? [{}]) as Doc[]).map((p) => (p.port ? `${a.ip}:${p.port}` : a.ip)),
    ),
  );
  if (!all.length) return "<none>";
  return all.length > 3 ? `${all.slice(0, 3).join(",")} + ${all.length - 3} more...` : all.join(",");
}

function eventSource(e: Doc): string {
  const src = e.source ?? {};
  if (src.component) return src.host ? `${src.component}, ${src.host}` : src.component;
  if (e.reportingController)
    return e.reportingInstance ? `${e.reportingController}, ${e.reportingInstance}` : e.reportingController;
  return "";
}

function eventRow(e: Doc, now: number): unknown[] {
  const first = e.firstTimestamp ? since(e.firstTimestamp, now) : since(e.eventTime, now);
  let last = e.lastTimestamp ? since(e.lastTimestamp, now) : first;
  let count = e.count ?? 0;
  if (e.series) {
    last = since(e.series.lastObservedTime, now);
    count = e.series.count;
  } else if (count > 1) last = `${last} (x${count} over ${first})`;
  const obj = e.involvedObject ?? {};
  const target = obj.name
    ? `${String(obj.kind ?? "").toLowerCase()}/${obj.name}`
    : String(obj.kind ?? "").toLowerCase();
  return [
    last,
    e.type ?? "",
    e.reason ?? "",
    target,
    obj.fieldPath ?? "",
    eventSource(e),
    String(e.message ?? "").trim(),
    first,
    count,
    e.metadata.name,
  ];
}

function subjects(list: Doc[] = []): string[] {
  const of = (kind: string) => list.filter((s) => s.kind === kind);
  const users = of("User").map((s) => s.name);
  const groups = of("Group").map((s) => s.name);
  const sas = of("ServiceAccount").map((s) => `${s.namespace ?? ""}/${s.name}`);
  return [users.join(", "), groups.join(", "), sas.join(", ")];
}

const BINDING_COLUMNS = [
  NAME,
  col("Role"),
  AGE,
  col("Users", "string", 1),
  col("Groups", "string", 1),
  col("ServiceAccounts", "string", 1),
];
const bindingRow = (b: Doc, now: number) => [
  b.metadata.name,
  `${b.roleRef?.kind ?? ""}/${b.roleRef?.name ?? ""}`,
  since(b.metadata.creationTimestamp, now),
  ...subjects(b.subjects),
];

/** The API's default table (a kind without a printer): Name, Created At. */
const DEFAULT_COLUMNS = [NAME, col("Created At", "date")];
const defaultRow = (o: Doc) => [o.metadata.name, o.metadata.creationTimestamp];

export interface Printer {
  columns: Column[];
  row: (o: Doc, now: number) => unknown[];
}

/** The printer of each kind served. */
export const PRINTERS: Record<string, Printer> = {
  Pod: { columns: POD_COLUMNS, row: podRow },
  Node: { columns: NODE_COLUMNS, row: nodeRow },
  Namespace: {
    columns: [NAME, col("Status"), AGE],
    row: (o, now) => [o.metadata.name, o.status?.phase ?? "", since(o.metadata.creationTimestamp, now)],
  },
  DaemonSet: {
    columns: [
      NAME,
      col("Desired", "integer"),
      col("Current", "integer"),
      col("Ready", "integer"),
      col("Up-to-date", "integer"),
      col("Available", "integer"),
      col("Node Selector"),
      AGE,
      col("Containers", "string", 1),
      col("Images", "string", 1),
      col("Selector", "string", 1),
    ],
    row: (o, now) => {
      const s = o.status ?? {};
      return [
        o.metadata.name,
        s.desiredNumberScheduled ?? 0,
        s.currentNumberScheduled ?? 0,
        s.numberReady ?? 0,
        s.updatedNumberScheduled ?? 0,
        s.numberAvailable ?? 0,
        formatLabels(o.spec?.template?.spec?.nodeSelector),
        since(o.metadata.creationTimestamp, now),
        ...containerCells(o.spec?.template?.spec?.containers),
        formatLabelSelector(o.spec?.selector),
      ];
    },
  },
  Service: {
    columns: [
      NAME,
      col("Type"),
      col("Cluster-IP"),
      col("External-IP"),
      col("Port(s)"),
      AGE,
      col("Selector", "string", 1),
    ],
    row: (o, now) => [
      o.metadata.name,
      o.spec?.type ?? "",
      o.spec?.clusterIPs?.[0] ?? o.spec?.clusterIP ?? "<none>",
      serviceExternalIP(o.spec),
      servicePorts(o.spec?.ports),
      since(o.metadata.creationTimestamp, now),
      formatLabels(o.spec?.selector),
    ],
  },
  Endpoints: {
    columns: [NAME, col("Endpoints"), AGE],
    row: (o, now) => [o.metadata.name, endpointsText(o.subsets), since(o.metadata.creationTimestamp, now)],
  },
  ConfigMap: {
    columns: [NAME, col("Data"), AGE],
    row: (o, now) => [
      o.metadata.name,
      Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length,
      since(o.metadata.creationTimestamp, now),
    ],
  },
  Secret: {
    columns: [NAME, col("Type"), col("Data"), AGE],
    row: (o, now) => [
      o.metadata.name,
      o.type ?? "",
      Object.keys(o.data ?? {}).length,
      since(o.metadata.creationTimestamp, now),
    ],
  },
  ServiceAccount: {
    columns: [NAME, col("Secrets"), AGE],
    row: (o, now) => [o.metadata.name, (o.secrets ?? []).length, since(o.metadata.creationTimestamp, now)],
  },
  Event: {
    columns: [
      col("Last Seen"),
      col("Type"),
      col("Reason"),
      col("Object"),
      col("Subobject", "string", 1),
      col("Source", "string", 1),
      col("Message"),
      col("First Seen", "string", 1),
      col("Count", "string", 1),
      col("Name", "string", 1, "name"),
    ],
    row: eventRow,
  },
  NetworkPolicy: {
    columns: [NAME, col("Pod-Selector"), AGE],
    row: (o, now) => [
      o.metadata.name,
      formatLabelSelector(o.spec?.podSelector),
      since(o.metadata.creationTimestamp, now),
    ],
  },
  Lease: {
    columns: [NAME, col("Holder"), AGE],
    row: (o, now) => [o.metadata.name, o.spec?.holderIdentity ?? "", since(o.metadata.creationTimestamp, now)],
  },
  RoleBinding: { columns: BINDING_COLUMNS, row: bindingRow },
  ClusterRoleBinding: { columns: BINDING_COLUMNS, row: bindingRow },
  Role: { columns: DEFAULT_COLUMNS, row: defaultRow },
  ClusterRole: { columns: DEFAULT_COLUMNS, row: defaultRow },
};
