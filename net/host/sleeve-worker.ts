/**
 * Entry of the sleeve's worker threads (one TX, one RX). Its first message says which
 * loop to run; the loop then owns the thread until stop, so nothing else here ever runs
 * in between. A loop that throws (a bug, not a bad packet: those are counted drops) is
 * logged and started again with the same context (replay windows, table), unless the
 * engine is stopping.
 *
 * In a `bun build --compile` binary this file must be an entrypoint of its own
 * (scripts/build.ts); Sleeve finds it at /$bunfs/root/net/host/sleeve-worker.js.
 */
import { LoopContext } from "./sleeve-loop.ts";
import { WRITER_RX, WRITER_TX, type WorkerInit, type WorkerMessage } from "./sleeve-shared.ts";
import { runRx } from "./sleeve-rx.ts";
import { runTx } from "./sleeve-tx.ts";

declare var self: Worker;

const post = (m: WorkerMessage) => self.postMessage(m);

self.onmessage = (e: MessageEvent<WorkerInit>) => {
  const init = e.data;
  const ctx = new LoopContext(init, init.role === "tx" ? WRITER_TX : WRITER_RX, post);
  const loop = init.role === "tx" ? runTx : runRx;
  post({ kind: "ready" });
  while (!ctx.stopping()) {
    try {
      loop(ctx);
    } catch (err) {
      post({ kind: "log", msg: `sleeve ${init.role} loop failed, restarting: ${(err as Error).stack ?? err}` });
      Bun.sleepSync(100);
    }
  }
  post({ kind: "stopped" });
};
