/**
 * The README's scrape job and alert rules (docs/prometheus/): the README shows the files
 * verbatim, promtool (Debian's prometheus) accepts the rules, and the rules fire on the
 * series they are about (promtool test rules, on series written here). Debian's
 * promtool is built without Kubernetes discovery, so the scrape job is checked with a
 * static target in its place; the e2e test (tests/e2e/metrics.test.ts) runs the job's
 * relabelling in a real Prometheus.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify } from "yaml";
import { ROOT } from "../support/env.ts";

const PROMTOOL = Bun.which("promtool");
const SCRAPE = join(ROOT, "docs/prometheus/weave-scrape.yaml");
const RULES = join(ROOT, "docs/prometheus/weave-alerts.yaml");
const dir = mkdtempSync(join(tmpdir(), "weave-promtool-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const promtool = (...args: string[]) => {
  const r = Bun.spawnSync([PROMTOOL!, ...args], { stdout: "pipe", stderr: "pipe", cwd: dir });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
};

describe("the README's Prometheus files", () => {
  test("the README shows both files verbatim", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    for (const f of [SCRAPE, RULES]) expect(readme).toContain(`\`\`\`yaml\n${readFileSync(f, "utf8")}\`\`\``);
  });

  test("the scrape job asks for pods by the DaemonSet's annotations and port names", () => {
    const job = parseYaml(readFileSync(SCRAPE, "utf8")).scrape_configs[0];
    expect(job.kubernetes_sd_configs[0].role).toBe("pod");
    const sources = job.relabel_configs.flatMap((r: { source_labels: string[] }) => r.source_labels);
    expect(sources).toContain("__meta_kubernetes_pod_annotation_prometheus_io_scrape");
    expect(sources).toContain("__meta_kubernetes_pod_container_port_name");
  });

  test.skipIf(!PROMTOOL)("promtool check rules and check config accept them", () => {
    const rules = promtool("check", "rules", RULES);
    expect(rules.out).toContain("SUCCESS: 8 rules found");
    expect(rules.code).toBe(0);
    const cfg = parseYaml(readFileSync(SCRAPE, "utf8"));
    const job = cfg.scrape_configs[0];
    delete job.kubernetes_sd_configs;
    job.static_configs = [{ targets: ["198.18.0.11:6782"] }];
    writeFileSync(join(dir, "prometheus.yml"), stringify({ rule_files: [RULES], ...cfg }));
    const check = promtool("check", "config", join(dir, "prometheus.yml"));
    expect(check.out).toContain("SUCCESS");
    expect(check.code).toBe(0);
  });

  test.skipIf(!PROMTOOL)("the alerts fire on what they are about, and not before their time", () => {
    const series = [
      { series: 'weave_peers{state="unreachable",node="n1",job="weave"}', values: "0 0 1x15" },
      { series: 'weave_ipam_free_ips{node="n2",job="weave"}', values: "5 0x10" },
      { series: 'weave_ipam_pending_allocates{node="n2",job="weave"}', values: "0 1x10" },
      {
        series: 'weave_cni_operations_total{command="ADD",result="error",node="n3",job="weave"}',
        values: "0 0 1 2 3 4 5 6 7 8 9 10",
      },
      { series: 'up{job="weave",node="n1",container="weave",instance="198.18.0.11:6782"}', values: "1 1 0x10" },
    ];
    const tests = {
      rule_files: [RULES],
      evaluation_interval: "1m",
      tests: [
        {
          interval: "1m",
          input_series: series,
          alert_rule_test: [
            { eval_time: "4m", alertname: "WeavePeerUnreachable", exp_alerts: [] },
            {
              eval_time: "10m",
              alertname: "WeavePeerUnreachable",
              exp_alerts: [
                {
                  exp_labels: { severity: "warning", state: "unreachable", node: "n1", job: "weave" },
                  exp_annotations: {
                    summary: "n1 cannot reach 1 weave peer(s)",
                    description:
                      "The mesh has no route to a peer for 5 minutes: check TCP 6783 and UDP 6784 between the nodes (weave doctor); the Node's WeavePeerConnectionFailing events name the peer.",
                  },
                },
              ],
            },
            {
              eval_time: "5m",
              alertname: "WeaveIPAMExhausted",
              exp_alerts: [
                {
                  exp_labels: { severity: "critical", node: "n2", job: "weave" },
                  exp_annotations: {
                    summary: "n2 has no free pod address and allocations are waiting",
                    description:
                      "Pods on this node stay in ContainerCreating: the node owns no free address and no peer gave it space (weave status ipam; space held by unreachable peers is freed by weave rmpeer).",
                  },
                },
              ],
            },
            {
              eval_time: "11m",
              alertname: "WeaveCNIErrors",
              exp_alerts: [
                {
                  exp_labels: { severity: "warning", node: "n3", command: "ADD" },
                  exp_annotations: {
                    summary: "CNI ADD fails on n3",
                    description:
                      "weave_cni_errors_total gives the CNI error codes (11: the agent was not ready or out of space).",
                  },
                },
              ],
            },
            { eval_time: "5m", alertname: "WeaveAgentDown", exp_alerts: [] },
          ],
        },
      ],
    };
    writeFileSync(join(dir, "tests.yml"), stringify(tests));
    const r = promtool("test", "rules", join(dir, "tests.yml"));
    expect(r.out).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });
});
