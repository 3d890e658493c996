/**
 * Request bodies in the API's protobuf encoding (`application/vnd.kubernetes.protobuf`),
 * which kubectl's typed clients send for `kubectl create namespace|configmap|secret|
 * serviceaccount|service|role|rolebinding|clusterrole|clusterrolebinding` (client-go
 * falls back to JSON on a 415 only for CBOR, so the server has to read them).
 *
 * The envelope is the magic `k8s\0` and a runtime.Unknown (typeMeta = 1, raw = 2); `raw`
 * is the object's message. Field numbers and names come from protobuf-fields.json, taken
 * from the API's generated.proto files (its `source` says which). Decoded as JSON would
 * have it: Time as RFC 3339, IntOrString as a number or string, bytes as base64; the
 * zero values a JSON encoder omits (empty strings, empty messages) are dropped.
 * Only those kinds: any other is a 415, with the media types the server takes.
 */
import { ApiError } from "./errors.ts";
import type { Doc } from "./json.ts";
import table from "./protobuf-fields.json";

export const PROTOBUF = "application/vnd.kubernetes.protobuf";

type Field = [name: string, type: string, repeated?: number];
const MESSAGES = (table as unknown as { messages: Record<string, Record<string, Field>> }).messages;

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  get done() {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let out = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error("truncated varint");
      out |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return out;
      shift += 7n;
    }
  }
  bytes(): Uint8Array {
    const n = Number(this.varint());
    const out = this.buf.subarray(this.pos, this.pos + n);
    if (out.length !== n) throw new Error("truncated field");
    this.pos += n;
    return out;
  }
  skip(wire: number) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unknown wire type ${wire}`);
  }
}

const utf8 = new TextDecoder();

function scalar(type: string, r: Reader, wire: number): unknown {
  if (type === "string") return utf8.decode(r.bytes());
  if (type === "bytes") return Buffer.from(r.bytes()).toString("base64");
  if (type === "double") {
    const v = new DataView(r.buf.buffer, r.buf.byteOffset + r.pos, 8).getFloat64(0, true);
    r.pos += 8;
    return v;
  }
  if (wire !== 0) throw new Error(`field of type ${type} has wire type ${wire}`);
  const v = r.varint();
  if (type === "bool") return v !== 0n;
  if (type === "int32") return Number(BigInt.asIntN(32, v));
  return Number(BigInt.asIntN(64, v));
}

/** Special messages: what JSON makes of them. */
function special(name: string, m: Doc): unknown {
  if (name.endsWith("meta.v1.Time") || name.endsWith("meta.v1.MicroTime"))
    return new Date(Number(m.seconds ?? 0) * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  if (name.endsWith("intstr.IntOrString")) return Number(m.type ?? 0) === 1 ? (m.strVal ?? "") : (m.intVal ?? 0);
  if (name.endsWith("resource.Quantity")) return m.string ?? "";
  if (name.endsWith("meta.v1.FieldsV1")) return m.Raw ? JSON.parse(Buffer.from(m.Raw, "base64").toString()) : {};
  return m;
}

function value(type: string, r: Reader, wire: number): unknown {
  if (type.startsWith("msg:")) return message(type.slice(4), r.bytes());
  if (type.startsWith("map:")) {
    const entry = new Reader(r.bytes());
    let key = "";
    let v: unknown = type === "map:string" ? "" : undefined;
    while (!entry.done) {
      const tag = Number(entry.varint());
      if (tag >> 3 === 1) key = utf8.decode(entry.bytes());
      else if (tag >> 3 === 2) v = value(type.slice(4), entry, tag & 7);
      else entry.skip(tag & 7);
    }
    return [key, v];
  }
  return scalar(type, r, wire);
}

/** Optional (pointer) fields, whose zero value a JSON encoder writes. */
const KEEP_ZERO = new Set([
  "immutable",
  "automountServiceAccountToken",
  "allocateLoadBalancerNodePorts",
  "controller",
  "blockOwnerDeletion",
  "deletionGracePeriodSeconds",
  "timeoutSeconds",
]);

const isEmpty = (v: unknown) =>
  v === "" ||
  v === 0 ||
  v === false ||
  v === undefined ||
  (typeof v === "object" && v !== null && !Array.isArray(v) && !Object.keys(v).length);

function message(name: string, buf: Uint8Array): unknown {
  const fields = MESSAGES[name];
  if (!fields) throw new Error(`no protobuf message ${name}`);
  const out: Doc = {};
  const r = new Reader(buf);
  while (!r.done) {
    const tag = Number(r.varint());
    const f = fields[String(tag >> 3)];
    if (!f) {
      r.skip(tag & 7);
      continue;
    }
    const [field, type, repeated] = f;
    const v = value(type, r, tag & 7);
    if (type.startsWith("map:")) {
      const [k, mv] = v as [string, unknown];
      out[field] = { ...(out[field] ?? {}), [k]: mv };
    } else if (repeated) out[field] = [...(out[field] ?? []), v];
    else out[field] = v;
  }
  for (const [k, v] of Object.entries(out)) if (isEmpty(v) && !KEEP_ZERO.has(k)) delete out[k];
  return special(name, out);
}

const PACKAGES: Record<string, string> = {
  v1: "k8s.io.api.core.v1",
  "rbac.authorization.k8s.io/v1": "k8s.io.api.rbac.v1",
};

/** Decodes a protobuf request body into the JSON object it stands for; 415 for a kind it cannot read. */
export function decodeProtobuf(body: Uint8Array): Doc {
  const magic = [0x6b, 0x38, 0x73, 0x00];
  const unsupported = (why: string) =>
    new ApiError(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format (${why}) - accepted media types include: application/json, application/yaml`,
    );
  if (!magic.every((b, i) => body[i] === b)) throw unsupported("no protobuf envelope");
  const envelope = new Reader(body.subarray(4));
  let apiVersion = "";
  let kind = "";
  let raw: Uint8Array | undefined;
  while (!envelope.done) {
    const tag = Number(envelope.varint());
    if (tag >> 3 === 1) {
      const meta = new Reader(envelope.bytes());
      while (!meta.done) {
        const t = Number(meta.varint());
        if (t >> 3 === 1) apiVersion = utf8.decode(meta.bytes());
        else if (t >> 3 === 2) kind = utf8.decode(meta.bytes());
        else meta.skip(t & 7);
      }
    } else if (tag >> 3 === 2) raw = envelope.bytes();
    else envelope.skip(tag & 7);
  }
  const name = `${PACKAGES[apiVersion] ?? "?"}.${kind}`;
  if (!raw || !MESSAGES[name]) throw unsupported(`protobuf of ${apiVersion}/${kind} is not read here`);
  return { apiVersion, kind, ...(message(name, raw) as Doc) };
}
