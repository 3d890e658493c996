/** Polling with a bound, for tests that wait on a distributed system: never a fixed sleep. */

/** Poll `fn` every 100 ms until it is true or `ms` pass; returns its last value. */
export async function eventually(fn: () => boolean, ms = 20000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return true;
    await Bun.sleep(100);
  }
  return fn();
}
