/**
 * What the API refuses on create and update, with its messages (`Pod "x" is invalid:
 * spec.containers: Required value`): object names (a DNS-1123 subdomain, a DNS-1123 label
 * for a Namespace, a DNS-1035 label for a Service, a path segment for RBAC kinds), label
 * keys and values, the fields a Pod and a DaemonSet need, the Pod spec's immutability, and
 * the NetworkPolicy fields the API rejects (protocols, ports, endPort, ipBlock, peers).
 * Only these: anything else the real API checks is let through.
 */
import { parseRange } from "../../cidr.ts";
import { type Cause, invalidFields } from "./errors.ts";
import { deepEqual, type Doc, isObj } from "./json.ts";
import type { ResourceDef } from "./resources.ts";

const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG =
  "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_MSG =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const PORT_MSG = "must be between 1 and 65535, inclusive";
const CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/** Collects field errors with the API's wording; `fail` throws them as one 422 Invalid. */
class FieldErrors {
  readonly causes: Cause[] = [];
  required(field: string, detail = "") {
    this.add("FieldValueRequired", field, `Required value${detail ? `: ${detail}` : ""}`);
  }
  invalid(field: string, value: unknown, detail: string) {
    this.add("FieldValueInvalid", field, `Invalid value: ${JSON.stringify(value)}: ${detail}`);
  }
  notSupported(field: string, value: unknown, supported: string[]) {
    const values = supported.map((s) => JSON.stringify(s)).join(", ");
    this.add(
      "FieldValueNotSupported",
      field,
      `Unsupported value: ${JSON.stringify(value)}: supported values: ${values}`,
    );
  }
  duplicate(field: string, value: unknown) {
    this.add("FieldValueDuplicate", field, `Duplicate value: ${JSON.stringify(value)}`);
  }
  forbidden(field: string, detail: string) {
    this.add("FieldValueForbidden", field, `Forbidden: ${detail}`);
  }
  private add(reason: string, field: string, message: string) {
    this.causes.push({ reason, field, message });
  }
  fail(d: ResourceDef, name: string | undefined) {
    if (this.causes.length) throw invalidFields(d, name, this.causes);
  }
}

/** The rule for a kind's names: which pattern, and its message. */
function nameRule(d: ResourceDef): { re: RegExp; msg: string; max: number } | "path-segment" {
  if (d.kind === "Namespace") return { re: LABEL, msg: LABEL_MSG, max: 63 };
  if (d.kind === "Service") return { re: DNS1035, msg: DNS1035_MSG, max: 63 };
  if (d.group === "rbac.authorization.k8s.io") return "path-segment";
  return { re: SUBDOMAIN, msg: SUBDOMAIN_MSG, max: 253 };
}

function checkName(errs: FieldErrors, d: ResourceDef, name: string, field = "metadata.name") {
  const rule = nameRule(d);
  if (rule === "path-segment") {
    if (name === "." || name === "..") errs.invalid(field, name, `may not be '${name}'`);
    for (const bad of ["/", "%"]) if (name.includes(bad)) errs.invalid(field, name, `may not contain '${bad}'`);
    return;
  }
  if (name.length > rule.max) errs.invalid(field, name, `must be no more than ${rule.max} characters`);
  if (!rule.re.test(name)) errs.invalid(field, name, rule.msg);
}

/** Label keys (`prefix/name`) and values, as metadata.labels and selectors take them. */
function checkLabels(errs: FieldErrors, labels: unknown, field: string) {
  if (!isObj(labels)) return;
  for (const [k, v] of Object.entries(labels)) {
    const parts = k.split("/");
    const name = parts.at(-1) ?? "";
    const prefix = parts.length === 2 ? parts[0]! : undefined;
    if (parts.length > 2 || !QUALIFIED_NAME.test(name) || name.length > 63) errs.invalid(field, k, QUALIFIED_MSG);
    else if (prefix !== undefined && !SUBDOMAIN.test(prefix)) errs.invalid(field, k, `prefix part ${SUBDOMAIN_MSG}`);
    if (typeof v !== "string" || v.length > 63 || !LABEL_VALUE.test(v)) errs.invalid(field, v, LABEL_VALUE_MSG);
  }
}

function checkSelector(errs: FieldErrors, sel: unknown, field: string) {
  if (!isObj(sel)) return;
  checkLabels(errs, sel.matchLabels, `${field}.matchLabels`);
  const ops = ["In", "NotIn", "Exists", "DoesNotExist"];
  ((sel.matchExpressions ?? []) as Doc[]).forEach((e, i) => {
    const at = `${field}.matchExpressions[${i}]`;
    if (!ops.includes(e.operator)) errs.notSupported(`${at}.operator`, e.operator, ops);
    const needsValues = e.operator === "In" || e.operator === "NotIn";
    const count = (e.values ?? []).length;
    if (needsValues && count === 0)
      errs.required(`${at}.values`, "must be specified when `operator` is 'In' or 'NotIn'");
    if (!needsValues && count > 0)
      errs.forbidden(`${at}.values`, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
  });
}

const PROTOCOLS = ["TCP", "UDP", "SCTP"];

function checkContainers(errs: FieldErrors, list: unknown, field: string, required: boolean) {
  const containers = Array.isArray(list) ? (list as Doc[]) : [];
  if (required && containers.length === 0) errs.required(field);
  const seen = new Set<string>();
  containers.forEach((c, i) => {
    const at = `${field}[${i}]`;
    if (!c.name) errs.required(`${at}.name`);
    else if (!LABEL.test(c.name) || c.name.length > 63) errs.invalid(`${at}.name`, c.name, LABEL_MSG);
    else if (seen.has(c.name)) errs.duplicate(`${at}.name`, c.name);
    seen.add(c.name);
    if (!c.image) errs.required(`${at}.image`);
    ((c.ports ?? []) as Doc[]).forEach((p, j) => {
      const pat = `${at}.ports[${j}]`;
      if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535)
        errs.invalid(`${pat}.containerPort`, p.containerPort ?? 0, PORT_MSG);
      if (p.protocol !== undefined && !PROTOCOLS.includes(p.protocol))
        errs.notSupported(`${pat}.protocol`, p.protocol, ["SCTP", "TCP", "UDP"]);
    });
  });
}

function checkPodSpec(errs: FieldErrors, spec: unknown, field: string) {
  const s = isObj(spec) ? spec : {};
  checkContainers(errs, s.containers, `${field}.containers`, true);
  checkContainers(errs, s.initContainers, `${field}.initContainers`, false);
  const policies = ["Always", "OnFailure", "Never"];
  if (s.restartPolicy !== undefined && !policies.includes(s.restartPolicy))
    errs.notSupported(`${field}.restartPolicy`, s.restartPolicy, policies);
  const dns = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
  if (s.dnsPolicy !== undefined && !dns.includes(s.dnsPolicy))
    errs.notSupported(`${field}.dnsPolicy`, s.dnsPolicy, dns);
}

function checkPort(errs: FieldErrors, p: Doc, at: string) {
  if (p.protocol !== undefined && !PROTOCOLS.includes(p.protocol))
    errs.notSupported(`${at}.protocol`, p.protocol, PROTOCOLS);
  const port = p.port;
  const endPort = p.endPort;
  if (port === undefined) {
    if (endPort !== undefined)
      errs.invalid(`${at}.endPort`, endPort, "may not be specified when `port` is not specified");
    return;
  }
  if (typeof port === "number") {
    if (!Number.isInteger(port) || port < 1 || port > 65535) errs.invalid(`${at}.port`, port, PORT_MSG);
    if (endPort === undefined) return;
    if (endPort < port) errs.invalid(`${at}.endPort`, port, "must be greater than or equal to `port`");
    if (!Number.isInteger(endPort) || endPort < 1 || endPort > 65535) errs.invalid(`${at}.endPort`, endPort, PORT_MSG);
    return;
  }
  if (endPort !== undefined) errs.invalid(`${at}.endPort`, endPort, "may not be specified when `port` is non-numeric");
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(String(port)) || String(port).length > 15 || !/[a-z]/.test(String(port)))
    errs.invalid(
      `${at}.port`,
      port,
      "must be a valid port name (at most 15 lower case alphanumeric characters or '-', with at least one letter)",
    );
}

function parsesAsCidr(s: unknown) {
  try {
    return typeof s === "string" ? parseRange(s, false) : undefined;
  } catch {
    return undefined;
  }
}

function checkIpBlock(errs: FieldErrors, b: Doc, at: string) {
  if (!b.cidr) return errs.required(`${at}.cidr`);
  const cidr = parsesAsCidr(b.cidr);
  if (!cidr) return errs.invalid(`${at}.cidr`, b.cidr, CIDR_MSG);
  for (const [i, e] of ((b.except ?? []) as unknown[]).entries()) {
    const ex = parsesAsCidr(e);
    const field = `${at}.except[${i}]`;
    if (!ex) {
      errs.invalid(field, e, CIDR_MSG);
      continue;
    }
    const inside = ex.family === cidr.family && ex.prefix > cidr.prefix && parsesInside(cidr, ex);
    if (!inside) errs.invalid(field, e, "must be a strict subset of `cidr`");
  }
}

function parsesInside(outer: { first: bigint; prefix: number; family: 4 | 6 }, inner: { first: bigint }) {
  const bits = BigInt((outer.family === 4 ? 32 : 128) - outer.prefix);
  return inner.first >> bits === outer.first >> bits;
}

function checkPeer(errs: FieldErrors, peer: Doc, at: string) {
  const kinds = ["podSelector", "namespaceSelector", "ipBlock"].filter(
    (k) => peer[k] !== undefined && peer[k] !== null,
  );
  if (kinds.length === 0) errs.required(at, "must specify a peer");
  else if (kinds.length > 1 && kinds.includes("ipBlock"))
    errs.forbidden(at, "may not specify both ipBlock and another peer");
  checkSelector(errs, peer.podSelector, `${at}.podSelector`);
  checkSelector(errs, peer.namespaceSelector, `${at}.namespaceSelector`);
  if (isObj(peer.ipBlock)) checkIpBlock(errs, peer.ipBlock, `${at}.ipBlock`);
}

function checkNetworkPolicy(errs: FieldErrors, spec: unknown) {
  const s = isObj(spec) ? spec : {};
  checkSelector(errs, s.podSelector, "spec.podSelector");
  for (const dir of ["ingress", "egress"] as const) {
    const peersField = dir === "ingress" ? "from" : "to";
    for (const [i, rule] of ((s[dir] ?? []) as Doc[]).entries()) {
      const at = `spec.${dir}[${i}]`;
      for (const [j, p] of ((rule.ports ?? []) as Doc[]).entries()) checkPort(errs, p, `${at}.ports[${j}]`);
      for (const [j, p] of ((rule[peersField] ?? []) as Doc[]).entries())
        checkPeer(errs, p, `${at}.${peersField}[${j}]`);
    }
  }
  const types = ["Ingress", "Egress"];
  const given = (s.policyTypes ?? []) as unknown[];
  given.forEach((t, i) => {
    if (!types.includes(t as string)) errs.notSupported(`spec.policyTypes[${i}]`, t, types);
  });
  if (given.length > 2) errs.invalid("spec.policyTypes", given, "may not specify more than two policyTypes");
}

function checkDaemonSet(errs: FieldErrors, spec: unknown) {
  const s = isObj(spec) ? spec : {};
  if (!isObj(s.selector)) errs.required("spec.selector");
  else checkSelector(errs, s.selector, "spec.selector");
  const labels = s.template?.metadata?.labels ?? {};
  checkLabels(errs, labels, "spec.template.metadata.labels");
  const matchLabels = isObj(s.selector) ? (s.selector.matchLabels ?? {}) : {};
  const matches = Object.entries(matchLabels).every(([k, v]) => labels[k] === v);
  if (isObj(s.selector) && !matches)
    errs.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`");
  checkPodSpec(errs, s.template?.spec, "spec.template.spec");
  const strategies = ["RollingUpdate", "OnDelete"];
  const strategy = s.updateStrategy?.type;
  if (strategy !== undefined && !strategies.includes(strategy))
    errs.notSupported("spec.updateStrategy.type", strategy, strategies);
}

/** Refuses an object the API would refuse on create (422 Invalid, every cause at once). */
export function validateCreate(d: ResourceDef, o: Doc): void {
  const errs = new FieldErrors();
  const name = o.metadata?.name;
  if (!name) errs.required("metadata.name", "name or generateName is required");
  else checkName(errs, d, name);
  checkLabels(errs, o.metadata?.labels, "metadata.labels");
  validateSpec(errs, d, o);
  errs.fail(d, name);
}

function validateSpec(errs: FieldErrors, d: ResourceDef, o: Doc) {
  if (d.kind === "Pod") checkPodSpec(errs, o.spec, "spec");
  if (d.kind === "DaemonSet") checkDaemonSet(errs, o.spec);
  if (d.kind === "NetworkPolicy") checkNetworkPolicy(errs, o.spec);
}

/** The Pod spec fields an update may change (the rest is immutable, as in the API). */
function mutablePodSpec(spec: Doc): Doc {
  const images = (list: unknown) => (Array.isArray(list) ? list.map((c: Doc) => ({ ...c, image: undefined })) : list);
  return {
    ...spec,
    containers: images(spec.containers),
    initContainers: images(spec.initContainers),
    activeDeadlineSeconds: undefined,
    tolerations: undefined,
    terminationGracePeriodSeconds: undefined,
  };
}

/** Refuses an update the API would refuse (labels, spec rules, the immutable Pod spec). */
export function validateUpdate(d: ResourceDef, current: Doc, next: Doc): void {
  const errs = new FieldErrors();
  checkLabels(errs, next.metadata?.labels, "metadata.labels");
  validateSpec(errs, d, next);
  if (d.kind === "Pod" && !deepEqual(mutablePodSpec(current.spec ?? {}), mutablePodSpec(next.spec ?? {})))
    errs.forbidden(
      "spec",
      "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    );
  errs.fail(d, current.metadata.name);
}
