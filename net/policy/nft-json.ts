/**
 * The kernel's table as `nft -j list table inet <name>` prints it, read into the model
 * of nft-model.ts (pure): chains with the comments of their rules (rule text is not
 * rebuilt from nft's expression tree: comments identify rules), sets and verdict maps
 * with their elements in the canonical text the compiler writes.
 */
import { emptyTable, type NftChain, type NftSet, type NftTable } from "./nft-model.ts";

// biome-ignore lint/suspicious/noExplicitAny: nft's JSON schema, read defensively
type Json = any;

export function tableFromJson(text: string, name: string): NftTable {
  const doc = JSON.parse(text) as { nftables?: Json[] };
  const t = emptyTable(name);
  const rules: Json[] = [];
  for (const item of doc.nftables ?? []) {
    if (item.chain) t.chains.set(item.chain.name, chainFromJson(item.chain));
    else if (item.set) t.sets.set(item.set.name, setFromJson(item.set, false));
    else if (item.map) t.sets.set(item.map.name, setFromJson(item.map, true));
    else if (item.rule) rules.push(item.rule);
  }
  for (const r of rules) t.chains.get(r.chain)?.rules.push({ text: "", comment: r.comment ?? "" });
  return t;
}

function chainFromJson(c: Json): NftChain {
  const base = c.hook ? { type: c.type, hook: c.hook, priority: c.prio, policy: c.policy ?? "accept" } : undefined;
  return { name: c.name, ...(base ? { base } : {}), rules: [] };
}

function setFromJson(s: Json, isMap: boolean): NftSet {
  const type = Array.isArray(s.type) ? s.type.join(" . ") : String(s.type);
  const elements = new Map<string, string>();
  for (const e of s.elem ?? []) {
    if (isMap) {
      const [key, value] = e as [Json, Json];
      elements.set(elementText(key), verdictText(value));
    } else elements.set(elementText(e), "");
  }
  return {
    name: s.name,
    type,
    ...(isMap ? { value: s.map === "verdict" ? ("verdict" as const) : s.map } : {}),
    elements,
  };
}

/** A key as the compiler writes it: parts of a concatenation joined by " . ". */
export function elementText(e: Json): string {
  if (e && typeof e === "object" && "elem" in e) return elementText(e.elem.val);
  if (e && typeof e === "object" && "concat" in e) return (e.concat as Json[]).map(elementText).join(" . ");
  if (e && typeof e === "object" && "prefix" in e) return `${e.prefix.addr}/${e.prefix.len}`;
  if (e && typeof e === "object" && "range" in e) return `${elementText(e.range[0])}-${elementText(e.range[1])}`;
  return String(e);
}

function verdictText(v: Json): string {
  if (v && typeof v === "object") {
    if (v.jump) return `jump ${v.jump.target}`;
    if (v.goto) return `goto ${v.goto.target}`;
    const [k] = Object.keys(v);
    return k ?? "";
  }
  return String(v);
}
