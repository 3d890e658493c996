/**
 * The pure diff between the table the kernel has and the one we want, as one
 * Transaction. Only what changed is written: new sets and chains, the elements that
 * differ, and chains whose rules (compared by their comments, see nft-model.ts) differ,
 * which are flushed and rewritten whole inside the same transaction. A no-op yields an
 * empty transaction.
 *
 * The order inside the script keeps every reference valid at each step: declare new
 * sets and chains; delete stale elements (a map element may jump to a chain about to
 * go); rewrite changed chains; empty, then delete, what is no longer wanted; add the new
 * elements last (they may jump to chains made above). When the kernel's table cannot be
 * reached by such steps (a set of ours with another type, a base chain with another
 * hook), the script deletes and recreates the whole table: still one transaction, so no
 * packet ever sees it half made.
 */
import { baseSpec, type NftChain, type NftSet, type NftTable, Transaction } from "./nft-model.ts";

export function diffTables(current: NftTable | undefined, desired: NftTable): Transaction {
  const tx = new Transaction(desired);
  if (!current) return create(tx.addTable(), desired);
  if (!compatible(current, desired)) return create(tx.addTable().deleteTable().addTable(), desired);

  const newSets = [...desired.sets.values()].filter((s) => !current.sets.has(s.name));
  const newChains = [...desired.chains.values()].filter((c) => !current.chains.has(c.name));
  const goneSets = [...current.sets.values()].filter((s) => !desired.sets.has(s.name));
  const goneChains = [...current.chains.values()].filter((c) => !desired.chains.has(c.name));

  for (const s of newSets) tx.addSet(s);
  for (const c of newChains) tx.addChain(c);
  for (const s of desired.sets.values()) {
    const have = current.sets.get(s.name);
    if (have) tx.deleteElements(have, staleKeys(have, s));
  }
  for (const c of desired.chains.values()) {
    const have = current.chains.get(c.name);
    if (have && sameRules(have, c)) continue;
    if (have) tx.flushChain(c.name);
    for (const r of c.rules) tx.addRule(c.name, r);
  }
  for (const c of goneChains) tx.flushChain(c.name);
  for (const s of goneSets) tx.deleteSet(s);
  for (const c of goneChains) tx.deleteChain(c.name);
  for (const s of desired.sets.values()) tx.addElements(s, newKeys(current.sets.get(s.name), s));
  return tx;
}

/** Everything of `t` into an empty table. */
function create(tx: Transaction, t: NftTable): Transaction {
  for (const s of t.sets.values()) tx.addSet(s);
  for (const c of t.chains.values()) tx.addChain(c);
  for (const c of t.chains.values()) for (const r of c.rules) tx.addRule(c.name, r);
  for (const s of t.sets.values()) tx.addElements(s, [...s.elements.keys()]);
  return tx;
}

function compatible(current: NftTable, desired: NftTable): boolean {
  for (const s of desired.sets.values()) {
    const have = current.sets.get(s.name);
    if (have && (have.type !== s.type || have.value !== s.value)) return false;
  }
  for (const c of desired.chains.values()) {
    const have = current.chains.get(c.name);
    if (!have) continue;
    const spec = (x: NftChain) => (x.base ? baseSpec(x.base) : "");
    if (spec(have) !== spec(c)) return false;
  }
  // a base chain of ours we no longer want cannot be told from a stray one: start over
  return [...current.chains.values()].every((c) => !c.base || desired.chains.has(c.name));
}

function sameRules(a: NftChain, b: NftChain): boolean {
  return a.rules.length === b.rules.length && a.rules.every((r, i) => r.comment === b.rules[i]!.comment);
}

/** Keys of `have` that `want` lacks or maps to another value. */
function staleKeys(have: NftSet, want: NftSet): string[] {
  return [...have.elements].filter(([k, v]) => want.elements.get(k) !== v).map(([k]) => k);
}

/** Keys of `want` that `have` lacks or maps to another value. */
function newKeys(have: NftSet | undefined, want: NftSet): string[] {
  return [...want.elements].filter(([k, v]) => have?.elements.get(k) !== v).map(([k]) => k);
}
