/**
 * A small typed model of one nftables table, after sigs.k8s.io/knftables: chains (base
 * or regular) with rules, sets and verdict maps with their elements, and a Transaction
 * that collects commands and renders them as ONE `nft -f -` script, which the kernel
 * applies atomically or not at all.
 *
 * Elements are kept in a canonical text (`10.0.0.1`, `10.0.0.1 . tcp . 8080`, map values
 * `jump <chain>`), the same text nft_json.ts makes of the kernel's listing, so the diff
 * compares strings. A rule is identified by its comment, which the compiler makes
 * unique and derives from the rule's text (a digest), so a rule whose text changes gets
 * a new comment; the kernel's rules are compared by their comments alone.
 */

export type BaseChain = {
  type: "filter";
  hook: "forward" | "input" | "output";
  priority: number;
  policy: "accept" | "drop";
};

export type NftRule = { text: string; comment: string };

export type NftChain = { name: string; base?: BaseChain; rules: NftRule[] };

/** A set (`value` undefined) or a verdict map (`value` "verdict"); `elements` maps key -> value ("" for sets). */
export type NftSet = { name: string; type: string; value?: "verdict"; elements: Map<string, string> };

export type NftTable = { family: "inet"; name: string; chains: Map<string, NftChain>; sets: Map<string, NftSet> };

export function emptyTable(name: string): NftTable {
  return { family: "inet", name, chains: new Map(), sets: new Map() };
}

/** nft's unquoted identifier: what every name of ours must be (chain names hold `/` and `.`). */
const IDENTIFIER = /^[a-zA-Z_][a-zA-Z0-9/._-]{0,250}$/;

export function checkName(name: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`"${name}" is not an nft identifier`);
  return name;
}

export function baseSpec(b: BaseChain): string {
  return `type ${b.type} hook ${b.hook} priority ${b.priority}; policy ${b.policy};`;
}

/** How many elements go in one `add element` command (nft parses one command into memory at a time). */
const ELEMENTS_PER_COMMAND = 500;

/** Commands added in order, run once (`text()` is the script for `nft -f -`). */
export class Transaction {
  private lines: string[] = [];

  constructor(readonly table: { family: string; name: string }) {}

  private get t(): string {
    return `${this.table.family} ${this.table.name}`;
  }

  get empty(): boolean {
    return this.lines.length === 0;
  }

  /** Only the commands (for tests and logs). */
  get commands(): readonly string[] {
    return this.lines;
  }

  raw(line: string): this {
    this.lines.push(line);
    return this;
  }

  addTable(): this {
    return this.raw(`add table ${this.t}`);
  }

  deleteTable(): this {
    return this.raw(`delete table ${this.t}`);
  }

  addChain(c: NftChain): this {
    const spec = c.base ? ` { ${baseSpec(c.base)} }` : "";
    return this.raw(`add chain ${this.t} ${checkName(c.name)}${spec}`);
  }

  flushChain(name: string): this {
    return this.raw(`flush chain ${this.t} ${name}`);
  }

  deleteChain(name: string): this {
    return this.raw(`delete chain ${this.t} ${name}`);
  }

  addRule(chain: string, r: NftRule): this {
    return this.raw(`add rule ${this.t} ${chain} ${r.text} comment "${r.comment.replaceAll('"', "'")}"`);
  }

  addSet(s: NftSet): this {
    const kind = s.value ? "map" : "set";
    const type = s.value ? `${s.type} : ${s.value}` : s.type;
    return this.raw(`add ${kind} ${this.t} ${checkName(s.name)} { type ${type}; }`);
  }

  deleteSet(s: NftSet): this {
    return this.raw(`delete ${s.value ? "map" : "set"} ${this.t} ${s.name}`);
  }

  addElements(s: NftSet, keys: string[]): this {
    return this.elements("add", s, keys);
  }

  deleteElements(s: NftSet, keys: string[]): this {
    return this.elements("delete", s, keys);
  }

  private elements(verb: "add" | "delete", s: NftSet, keys: string[]): this {
    for (let i = 0; i < keys.length; i += ELEMENTS_PER_COMMAND) {
      const chunk = keys.slice(i, i + ELEMENTS_PER_COMMAND);
      const items = chunk.map((k) => (s.value && verb === "add" ? `${k} : ${s.elements.get(k)}` : k));
      this.raw(`${verb} element ${this.t} ${s.name} { ${items.join(", ")} }`);
    }
    return this;
  }

  text(): string {
    return this.lines.length ? `${this.lines.join("\n")}\n` : "";
  }
}
