/**
 * `weave sleeve-selftest --tap <name> [--port 6783]` (hidden; `--check` only says it is there): a Sleeve driven by JSON
 * lines, so tests run the engine from the compiled binary exactly as the agent would,
 * inside a namespace of their own (`ip netns exec <node> weave sleeve-selftest ...`).
 *
 * stdin, one request a line:  {"id":1,"cmd":"table","table":{...}} | {"id":2,"cmd":"stats"}
 *                             | {"id":3,"cmd":"ping","to":"10.0.0.1","nonce":"42"} | {"id":4,"cmd":"stop"}
 * stdout, one answer a line:  {"id":1,"ok":true,"result":...} | {"id":1,"ok":false,"error":"..."}
 *                             and events: {"event":"ready"} {"event":"pong",...} {"event":"log","msg":"..."}
 * The engine stops when stdin ends, so a test that dies leaves no TAP behind.
 */
import { Sleeve, type SleeveTable } from "../net/host/sleeve.ts";

type Request = {
  id: number;
  cmd: "table" | "stats" | "ping" | "stop";
  table?: SleeveTable;
  to?: string;
  nonce?: string;
};

const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);

export async function run(o: { tap?: string; port?: number | string; check?: boolean }): Promise<number> {
  if (o.check) {
    // For tests: does this binary have the command?
    out({ event: "check", ok: true });
    return 0;
  }
  if (!o.tap) throw new Error("sleeve-selftest: --tap <name> is required");
  const port = o.port === undefined ? undefined : Number(o.port);
  const sleeve = new Sleeve({ tap: o.tap, port, log: (msg) => out({ event: "log", msg }) });
  sleeve.onPong((from, nonce, sentAtMs) => out({ event: "pong", from, nonce: nonce.toString(), sentAtMs }));
  try {
    await sleeve.start();
  } catch (e) {
    out({ event: "error", error: (e as Error).message });
    return 1;
  }
  out({ event: "ready" });
  const answer = async (r: Request): Promise<unknown> => {
    if (r.cmd === "table") return sleeve.setTable(r.table!);
    if (r.cmd === "stats") return sleeve.stats();
    if (r.cmd === "ping") return sleeve.ping(r.to!, BigInt(r.nonce!));
    if (r.cmd === "stop") return sleeve.stop();
    throw new Error(`unknown cmd ${JSON.stringify(r.cmd)}`);
  };
  let buffered = "";
  for await (const chunk of Bun.stdin.stream()) {
    buffered += new TextDecoder().decode(chunk);
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf("\n");
      if (!line) continue;
      const r = JSON.parse(line) as Request;
      try {
        out({ id: r.id, ok: true, result: (await answer(r)) ?? null });
      } catch (e) {
        out({ id: r.id, ok: false, error: (e as Error).message });
      }
      if (r.cmd === "stop") return 0;
    }
  }
  await sleeve.stop();
  return 0;
}
