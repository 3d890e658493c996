/**
 * Serving metrics: two prom-client registries, one that writes the Prometheus text format
 * (0.0.4) and one that writes OpenMetrics 1.0.0, and each scrape is answered from the one
 * its Accept header prefers (Prometheus 2.x asks for OpenMetrics first). Every metric is
 * defined once per registry (`define`), not shared by both: prom-client's OpenMetrics
 * rendering renames a counter object in place (it strips `_total` from metric.name), so
 * a counter in both registries would lose its `_total` in the text format after the first
 * OpenMetrics scrape. And two registries rather than switching one registry's content
 * type per request: a scrape is asynchronous, and two overlapping scrapes would race.
 */
import {
  type OpenMetricsContentType,
  openMetricsContentType,
  type PrometheusContentType,
  prometheusContentType,
  Registry,
} from "prom-client";

export type Format = "text" | "openmetrics";

/** Which format an Accept header prefers: OpenMetrics only when asked for with a higher q than text. */
export function negotiate(accept: string | null | undefined): Format {
  if (!accept) return "text";
  let open = -1;
  let text = -1;
  for (const part of accept.split(",")) {
    const [type, ...params] = part.split(";").map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith("q="));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q)) continue;
    if (type === "application/openmetrics-text") open = Math.max(open, q);
    else if (type === "text/plain" || type === "*/*" || type === "text/*") text = Math.max(text, q);
  }
  return open > 0 && open >= text ? "openmetrics" : "text";
}

export class Exposition {
  readonly text = new Registry<PrometheusContentType>();
  readonly openMetrics = new Registry<OpenMetricsContentType>();

  constructor() {
    this.text.setContentType(prometheusContentType);
    this.openMetrics.setContentType(openMetricsContentType);
  }

  /** Both registries (process metrics are collected into each). */
  get registries(): Registry[] {
    return [this.text, this.openMetrics as unknown as Registry];
  }

  /** Defines a set of metrics in each registry: `fn` gets the `registers` option for one of them. */
  define(fn: (registers: Registry[]) => void): void {
    for (const r of this.registries) fn([r]);
  }

  async render(format: Format): Promise<{ body: string; contentType: string }> {
    const r = format === "openmetrics" ? this.openMetrics : this.text;
    return { body: await r.metrics(), contentType: r.contentType };
  }

  /** GET /metrics in the format the scraper prefers; anything else is 404 (405 for another method). */
  async handle(req: Request): Promise<Response> {
    // an HTTP/1.0 request without Host has no absolute URL: take the path as sent
    const path = req.url.replace(/^[a-z]+:\/\/[^/]*/, "").split("?")[0];
    if (path !== "/metrics") return new Response("not found: metrics are at /metrics\n", { status: 404 });
    if (req.method !== "GET" && req.method !== "HEAD")
      return new Response(`method ${req.method} not allowed on /metrics\n`, { status: 405 });
    try {
      const { body, contentType } = await this.render(negotiate(req.headers.get("accept")));
      return new Response(body, { headers: { "content-type": contentType } });
    } catch (e) {
      return new Response(`collecting metrics failed: ${(e as Error).message}\n`, { status: 500 });
    }
  }
}

/**
 * A counter whose running totals are kept elsewhere (the router's byte counts, the
 * controller's syncs) is set to them at each scrape, from its collect(). Resetting and
 * adding the totals again keeps the exposition's values equal to the source's.
 */
export function setTotals<T extends string>(
  c: { reset(): void; inc(labels: Partial<Record<T, string | number>>, value: number): void },
  rows: [Partial<Record<T, string | number>>, number][],
): void {
  c.reset();
  for (const [labels, total] of rows) c.inc(labels, total);
}
