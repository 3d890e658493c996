/**
 * How doctor runs things: commands (optionally inside a network namespace, by nsenter,
 * which keeps the mount namespace and /sys), each with a hard timeout, a bounded number
 * at a time. This and the gather-*.ts files are doctor's effectful edge; everything
 * else in net/doctor is pure.
 *
 * The agent's API listens on 127.0.0.1 inside each node's namespace, out of reach of a
 * fetch() from here (an async fetch must not run while the thread is switched into
 * another namespace), so in the lab it is asked through bash's /dev/tcp inside the
 * namespace: one small process, no curl needed.
 */
export type ExecResult = { code: number; stdout: string; stderr: string; timedOut: boolean };
export type Exec = (argv: string[], o?: { netns?: string; timeoutMs?: number }) => Promise<ExecResult>;

const PATH = process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin";

/** Runs at most `limit` commands at once. */
export function hostExec(limit = 24): Exec {
  let running = 0;
  const waiting: (() => void)[] = [];
  const slot = async () => {
    if (running >= limit) await new Promise<void>((r) => waiting.push(r));
    running++;
  };
  const release = () => {
    running--;
    waiting.shift()?.();
  };
  return async (argv, o = {}) => {
    await slot();
    try {
      const full = o.netns ? ["nsenter", `--net=${o.netns}`, ...argv] : argv;
      const spawnOptions = { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { PATH, LC_ALL: "C" } } as const;
      let p: Bun.Subprocess<"ignore", "pipe", "pipe">;
      try {
        p = Bun.spawn(full, spawnOptions);
      } catch (e) {
        return { code: 127, stdout: "", stderr: (e as Error).message, timedOut: false };
      }
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        p.kill("SIGKILL");
      }, o.timeoutMs ?? 3000);
      const [stdout, stderr, code] = await Promise.all([
        new Response(p.stdout).text(),
        new Response(p.stderr).text(),
        p.exited,
      ]);
      clearTimeout(timer);
      return { code: timedOut ? 124 : code, stdout, stderr, timedOut };
    } finally {
      release();
    }
  };
}

const HTTP_GET =
  'exec 3<>/dev/tcp/127.0.0.1/$2 || exit 7; printf "GET %s HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n" "$1" >&3; cat <&3';

/** GET `path` from the agent API inside a namespace; the raw response, or why not. */
export function agentGetInNetns(
  exec: Exec,
  netns: string,
  path: string,
  timeoutMs = 3000,
): Promise<{ raw?: string; error?: string }> {
  return localGetInNetns(exec, netns, 6784, path, timeoutMs);
}

/** GET `path` from 127.0.0.1:`port` inside a namespace (bash's /dev/tcp); the raw response, or why not. */
export async function localGetInNetns(
  exec: Exec,
  netns: string,
  port: number,
  path: string,
  timeoutMs = 3000,
): Promise<{ raw?: string; error?: string }> {
  const r = await exec(["bash", "-c", HTTP_GET, "weave-doctor", path, String(port)], { netns, timeoutMs });
  if (r.timedOut) return { error: `no answer within ${timeoutMs / 1000} s` };
  if (r.code !== 0)
    return {
      error: /refused/i.test(r.stderr) ? "connection refused" : r.stderr.trim().split("\n").at(-1) || `exit ${r.code}`,
    };
  return { raw: r.stdout };
}

/** TCP connect from inside `netns` to ip:port; ok, or why not ("timed out", "refused"). */
export async function tcpConnect(
  exec: Exec,
  netns: string | undefined,
  ip: string,
  port: number,
  timeoutMs = 1000,
): Promise<{ ok: boolean; detail: string }> {
  const r = await exec(["bash", "-c", `exec 3<>/dev/tcp/${ip}/${port}`], { netns, timeoutMs });
  if (r.code === 0) return { ok: true, detail: "" };
  if (r.timedOut) return { ok: false, detail: `timed out after ${timeoutMs / 1000} s` };
  return {
    ok: false,
    detail: /refused/i.test(r.stderr)
      ? "connection refused"
      : /unreachable/i.test(r.stderr)
        ? "no route"
        : r.stderr.trim().split("\n").at(-1) || `exit ${r.code}`,
  };
}

/**
 * Ping from inside `netns` (two echo requests, 0.2 s apart, 1 s to answer): ok when
 * any reply came. `size` sends one echo request with don't-fragment at that payload
 * size; one, because the first full-size request that is dropped on the way teaches
 * the kernel a smaller path MTU, which would refuse a second one locally. A local
 * refusal of that single request therefore means the path MTU was cached before
 * (from an earlier drop, kept 10 minutes): it is returned as `cachedMtu`.
 */
export async function ping(
  exec: Exec,
  netns: string | undefined,
  ip: string,
  size?: number,
): Promise<{ ok: boolean; detail: string; cachedMtu?: number }> {
  const argv = [
    "ping",
    "-n",
    "-W",
    "1",
    ...(size ? ["-c", "1", "-M", "do", "-s", String(size)] : ["-c", "2", "-i", "0.2"]),
    ip,
  ];
  const r = await exec(argv, { netns, timeoutMs: 3000 });
  const bytes = size ? `${size + 28} bytes` : "";
  if (r.code === 0) return { ok: true, detail: bytes };
  const out = r.stderr + r.stdout;
  const local = /message too long, mtu=(\d+)/.exec(out);
  if (local)
    return {
      ok: false,
      detail: [bytes, `path MTU ${local[1]} cached`].filter(Boolean).join(", "),
      cachedMtu: Number(local[1]),
    };
  const why = r.timedOut ? "timed out" : /unreachable/i.test(out) ? "unreachable" : "no reply";
  return { ok: false, detail: [bytes, why].filter(Boolean).join(", ") };
}
