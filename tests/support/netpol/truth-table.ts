/**
 * Truth tables as upstream's netpol e2e keeps them (reachability.go, truthtable.go): a
 * table of booleans for every ordered pair of pods "ns/pod", an Expected one and an
 * Observed one, compared cell by cell, printed with "." for true and "X" for false.
 * Loopback cells (a pod to itself) are ignored when counting wrong results, as upstream
 * does (kubernetes#95879). The upstream-style edits (expect, expectAllIngress,
 * expectAllEgress, expectPeer with an empty namespace or pod as a wildcard) are how a case
 * writes down upstream's expectation, which the model must reproduce.
 */

export type PodKey = `${string}/${string}`;
export type Peer = { namespace?: string; pod?: string };

export class TruthTable {
  private readonly values = new Map<string, boolean>();
  constructor(
    readonly pods: PodKey[],
    fill?: boolean,
  ) {
    if (fill !== undefined) for (const f of pods) for (const t of pods) this.set(f, t, fill);
  }
  private key(from: PodKey, to: PodKey): string {
    if (!this.pods.includes(from) || !this.pods.includes(to)) throw new Error(`no pod pair ${from} -> ${to}`);
    return `${from} ${to}`;
  }
  set(from: PodKey, to: PodKey, v: boolean): void {
    this.values.set(this.key(from, to), v);
  }
  get(from: PodKey, to: PodKey): boolean | undefined {
    return this.values.get(this.key(from, to));
  }
  /** A table of `this == other`, cell by cell. */
  compare(other: TruthTable): TruthTable {
    const out = new TruthTable(this.pods);
    for (const f of this.pods) for (const t of this.pods) out.set(f, t, this.get(f, t) === other.get(f, t));
    return out;
  }
  /** Rows are clients, columns servers: "." true, "X" false, "?" not set. */
  pretty(): string {
    const width = Math.max(...this.pods.map((p) => p.length)) + 1;
    const cell = (s: string) => s.padEnd(width);
    const header = cell("-") + this.pods.map(cell).join("");
    const mark = (v: boolean | undefined) => (v === undefined ? "?" : v ? "." : "X");
    const rows = this.pods.map((f) => cell(f) + this.pods.map((t) => cell(mark(this.get(f, t)))).join(""));
    return [header, ...rows].map((l) => l.trimEnd()).join("\n");
  }
}

const matches = (p: Peer, pod: PodKey) => {
  const [ns, name] = pod.split("/");
  return (!p.namespace || p.namespace === ns) && (!p.pod || p.pod === name);
};

/** Upstream's `Reachability`: what a case expects, what the probes saw. */
export class Reachability {
  readonly expected: TruthTable;
  readonly observed: TruthTable;
  constructor(
    readonly pods: PodKey[],
    expectAll = true,
  ) {
    this.expected = new TruthTable(pods, expectAll);
    this.observed = new TruthTable(pods);
  }
  expect(from: PodKey, to: PodKey, v: boolean): this {
    this.expected.set(from, to, v);
    return this;
  }
  expectAllIngress(to: PodKey, v: boolean): this {
    for (const f of this.pods) this.expected.set(f, to, v);
    return this;
  }
  expectAllEgress(from: PodKey, v: boolean): this {
    for (const t of this.pods) this.expected.set(from, t, v);
    return this;
  }
  expectPeer(from: Peer, to: Peer, v: boolean): this {
    for (const f of this.pods)
      for (const t of this.pods) if (matches(from, f) && matches(to, t)) this.expected.set(f, t, v);
    return this;
  }
  /** The cells (loopback left out) where observed differs from expected. */
  wrong(): { from: PodKey; to: PodKey; expected: boolean; observed: boolean | undefined }[] {
    const out = [];
    for (const from of this.pods)
      for (const to of this.pods) {
        if (from === to) continue;
        const expected = this.expected.get(from, to)!;
        const observed = this.observed.get(from, to);
        if (expected !== observed) out.push({ from, to, expected, observed });
      }
    return out;
  }
  /** Upstream's PrintSummary: counts, then expected, observed and the comparison. */
  summary(): string {
    const wrong = this.wrong().length;
    const cells = this.pods.length * (this.pods.length - 1);
    return [
      `reachability: correct:${cells - wrong}, incorrect:${wrong} (${this.pods.length} loopback cells ignored)`,
      `expected:\n${this.expected.pretty()}`,
      `observed:\n${this.observed.pretty()}`,
      `comparison:\n${this.expected.compare(this.observed).pretty()}`,
    ].join("\n\n");
  }
}
