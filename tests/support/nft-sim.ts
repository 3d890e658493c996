/**
 * A packet walker over a compiled table (net/policy/nft-model.ts): it reads the few rule
 * forms the compiler writes and follows the forward chain as the kernel would for the
 * first packet of a connection, so unit tests can compare the compiled kernel state with
 * the reference evaluator pod by pod and port by port. An unknown rule form fails the
 * test instead of being skipped.
 */
import { canonicalIp, ipFamily, parseRange, rangeHolds } from "../../net/cidr.ts";
import type { NftChain, NftTable } from "../../net/policy/nft-model.ts";

export type Packet = { saddr: string; daddr: string; protocol: "tcp" | "udp" | "sctp" | "icmp"; dport: number };
export type Walk = { verdict: "accept" | "drop"; logged: string[] };

export function walk(t: NftTable, p: Packet): Walk {
  const logged: string[] = [];
  const forward = t.chains.get("forward");
  if (!forward) throw new Error("no forward chain");
  const end = runChain(t, forward, p, logged, 0);
  return { verdict: end === "drop" ? "drop" : "accept", logged };
}

type End = "accept" | "drop" | "return";

function runChain(t: NftTable, c: NftChain, p: Packet, logged: string[], depth: number): End {
  if (depth > 8) throw new Error("jump loop");
  for (const r of c.rules) {
    const end = runRule(t, r.text, p, logged, depth);
    if (end) return end;
  }
  return "return";
}

/** What one term of a rule does: match on (`next`), no match (`miss`), or end the chain. */
type Step = "next" | "miss" | End;

/** One rule: undefined when it does not end the chain. */
function runRule(t: NftTable, text: string, p: Packet, logged: string[], depth: number): End | undefined {
  const family = ipFamily(p.saddr);
  const addr = (field: string) => canonicalIp(field === "saddr" ? p.saddr : p.daddr);
  const sameFamily = (kw: string) => (kw === "ip") === (family === 4);
  const forms: [RegExp, (m: RegExpExecArray) => Step][] = [
    [/^(accept|drop|return)$/, (m) => m[1] as End],
    [/^counter drop$/, () => "drop"],
    // a first packet is new
    [/^ct state established,related accept$/, () => "miss"],
    [
      /^(ip6?) (saddr|daddr) vmap @(\S+)$/,
      (m) => {
        if (!sameFamily(m[1]!)) return "miss";
        const target = t.sets.get(m[3]!)?.elements.get(addr(m[2]!));
        if (!target) return "miss";
        const chain = t.chains.get(target.replace(/^jump /, ""));
        if (!chain) throw new Error(`map ${m[3]} jumps to a missing chain ${target}`);
        const end = runChain(t, chain, p, logged, depth + 1);
        return end === "return" ? "miss" : end;
      },
    ],
    [
      /^ct state new log group \d+ prefix "([^"]*)"$/,
      (m) => {
        logged.push(m[1]!);
        return "miss";
      },
    ],
    [
      /^(ip6?) daddr \. meta l4proto \. th dport @(\S+)/,
      (m) => {
        const key = `${addr("daddr")} . ${p.protocol} . ${p.dport}`;
        return sameFamily(m[1]!) && t.sets.get(m[2]!)?.elements.has(key) ? "next" : "miss";
      },
    ],
    [
      /^(ip6?) (saddr|daddr) @(\S+)/,
      (m) => (sameFamily(m[1]!) && t.sets.get(m[3]!)?.elements.has(addr(m[2]!)) ? "next" : "miss"),
    ],
    [
      /^(ip6?) (saddr|daddr) != \{ ([^}]*) \}/,
      (m) => {
        const ip = addr(m[2]!);
        const excepted = m[3]!.split(", ").some((r) => rangeHolds(parseRange(r), ip));
        return sameFamily(m[1]!) && !excepted ? "next" : "miss";
      },
    ],
    [
      /^(ip6?) (saddr|daddr) (\S+\/\d+)/,
      (m) => (sameFamily(m[1]!) && rangeHolds(parseRange(m[3]!), addr(m[2]!)) ? "next" : "miss"),
    ],
    [
      /^meta l4proto \. th dport \{ ([^}]*) \}/,
      (m) => {
        const hit = m[1]!.split(", ").some((item) => {
          const [proto, ports] = item.split(" . ");
          const [first, last] = ports!.split("-").map(Number);
          return proto === p.protocol && p.dport >= first! && p.dport <= (last ?? first!);
        });
        return hit ? "next" : "miss";
      },
    ],
  ];
  let rest = text.trim();
  while (rest) {
    const form = forms.find(([re]) => re.test(rest));
    if (!form) throw new Error(`the walker does not know this rule: ${text} (at: ${rest})`);
    const m = form[0].exec(rest)!;
    rest = rest.slice(m[0].length).trim();
    const step = form[1](m);
    if (step === "miss") return undefined;
    if (step !== "next") return step;
  }
  return undefined;
}
