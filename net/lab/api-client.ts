/**
 * The lab CLI's few calls to the lab's API server, as plain REST (what kubectl sends):
 * the CLI makes pods and deletes nodes through the API, so a lab pod takes the same path
 * as a Pod applied with kubectl. An API refusal keeps the server's own message.
 */
import { WeaveError } from "../errors.ts";

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are handled as loose JSON documents
export type Doc = Record<string, any>;

export class LabApi {
  constructor(readonly url: string) {}

  async request(method: string, path: string, body?: unknown): Promise<{ status: number; doc: Doc }> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      const why = `the lab's API server at ${this.url} does not answer (${(e as Error).message})`;
      throw new WeaveError("E_LAB_API", `${why}; see the control plane's log in the lab's folder`);
    }
    const text = await res.text();
    let doc: Doc = {};
    try {
      doc = text ? JSON.parse(text) : {};
    } catch {
      doc = { message: text };
    }
    return { status: res.status, doc };
  }

  /** The object, or undefined on 404; other failures throw with the API's message. */
  async get(path: string): Promise<Doc | undefined> {
    const r = await this.request("GET", path);
    if (r.status === 404) return undefined;
    if (r.status >= 300) throw apiRefusal("GET", path, r.doc);
    return r.doc;
  }

  async create(path: string, body: Doc): Promise<Doc> {
    const r = await this.request("POST", path, body);
    if (r.status >= 300) throw apiRefusal("POST", path, r.doc);
    return r.doc;
  }

  /** Deletes; true when it was there. */
  async delete(path: string): Promise<boolean> {
    const r = await this.request("DELETE", path);
    if (r.status === 404) return false;
    if (r.status >= 300) throw apiRefusal("DELETE", path, r.doc);
    return true;
  }
}

function apiRefusal(method: string, path: string, doc: Doc): WeaveError {
  const reason = doc.reason ? ` (${doc.reason})` : "";
  return new WeaveError("E_LAB_API", `${method} ${path}: ${doc.message ?? "refused"}${reason}`);
}
