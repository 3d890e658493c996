/**
 * The table doctor prints. Passing results of one check are folded into one row (the
 * first one's evidence and how many more), so a big cluster stays readable; every
 * warning and failure gets its own row with its fix underneath. `-o json` prints the
 * results unfolded instead.
 */
import type { CheckResult } from "./types.ts";

export type Paint = {
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
};
export const NO_PAINT: Paint = { red: (s) => s, green: (s) => s, yellow: (s) => s, dim: (s) => s, bold: (s) => s };

type Row = { check: string; node: string; status: CheckResult["status"]; evidence: string; fix?: string };

export function rows(rs: CheckResult[]): Row[] {
  const out: Row[] = [];
  const names = [...new Set(rs.map((r) => r.name))];
  for (const name of names) {
    const mine = rs.filter((r) => r.name === name);
    const passed = mine.filter((r) => r.status === "pass");
    if (passed.length) {
      const nodes = [...new Set(passed.map((r) => r.node).filter(Boolean))];
      const node = nodes.length === 0 ? "-" : nodes.length === 1 ? nodes[0]! : `${nodes.length} nodes`;
      out.push({
        check: name,
        node,
        status: "pass",
        evidence: passed[0]!.evidence + (passed.length > 1 ? ` (+${passed.length - 1} more)` : ""),
      });
    }
    for (const r of mine.filter((r) => r.status !== "pass"))
      out.push({ check: name, node: r.node ?? "-", status: r.status, evidence: r.evidence, fix: r.fix });
  }
  return out;
}

/** Wrap `text` to `width` columns; continuation lines start with `indent`. */
export function wrap(text: string, width: number, indent: string): string {
  const words = text.split(" ");
  const lines: string[] = [];
  let cur = "";
  for (const w of words) {
    if (cur && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  lines.push(cur);
  return lines.join(`\n${indent}`);
}

export function table(rs: CheckResult[], o: { width?: number; paint?: Paint } = {}): string {
  const p = o.paint ?? NO_PAINT;
  const rws = rows(rs);
  const cw = Math.max(5, ...rws.map((r) => r.check.length)) + 2;
  const nw = Math.max(4, ...rws.map((r) => r.node.length)) + 2;
  const sw = 8;
  const indent = " ".repeat(cw + nw + sw);
  const width = Math.max(40, (o.width ?? 120) - indent.length);
  const mark = { pass: p.green("pass"), warn: p.yellow("warn"), fail: p.red("FAIL") };
  const lines = [p.bold(`${"CHECK".padEnd(cw)}${"NODE".padEnd(nw)}${"STATUS".padEnd(sw)}EVIDENCE`)];
  for (const r of rws) {
    lines.push(
      `${r.check.padEnd(cw)}${r.node.padEnd(nw)}${mark[r.status]}${" ".repeat(sw - 4)}${wrap(r.evidence, width, indent)}`,
    );
    if (r.fix) lines.push(`${indent}${p.dim(wrap(`fix: ${r.fix}`, width, indent))}`);
  }
  return `${lines.join("\n")}\n`;
}
