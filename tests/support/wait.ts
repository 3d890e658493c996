/** Polling with a bound, for tests that wait on a distributed system: never a fixed sleep. */

/** Poll `fn` (it may be async) every 100 ms until it is true or `ms` pass; returns its last value. */
export async function eventually(fn: () => boolean | Promise<boolean>, ms = 20000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await Bun.sleep(100);
  }
  return await fn();
}

/** Poll `f` every `pollMs` until it gives a value; throws once `ms` pass without one. */
export async function until<T>(
  f: () => T | undefined | false,
  ms: number,
  pollMs = 10,
  what = `timed out after ${ms} ms`,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(what);
    await Bun.sleep(pollMs);
  }
}

/** Read `stream` until it has said `text` (a tool's "listening on"); throws with what it said, as `who`, if it ends first. */
export async function untilSaid(stream: ReadableStream<Uint8Array>, text: string, who: string): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  try {
    for (let said = ""; !said.includes(text); ) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${who}: ${said}`);
      said += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
}
