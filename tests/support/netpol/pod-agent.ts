/**
 * What runs inside one lab pod's network namespace for the NetworkPolicy model (started
 * with `nsenter --net=<pod netns> bun pod-agent.ts --tcp 80,81 --udp 80,81`): lab pods run
 * no process, so this is both the pod's servers and its client.
 *
 * - Servers: TCP listeners that accept and close, and UDP echo sockets, on the ports given.
 *   Once all listen it prints `{"ready":true}`.
 * - Client: each stdin line is a probe request `{"id":N,"timeoutMs":1000,"targets":[{ip,port,protocol}]}`;
 *   it probes every target at once (from this namespace, so from this pod) and prints
 *   `{"id":N,"results":["ok"|"timeout"|"refused"|"error: ..."]}`. TCP is a connect; UDP is a
 *   request and its echo (sent three times within the timeout, since one datagram may be
 *   lost to neighbour resolution). A TCP attempt that times out is destroyed, so no SYN
 *   keeps retrying into a later case.
 *
 * It exits when stdin closes: a test process that dies takes its agents with it.
 */
import { connect } from "node:net";

type Target = { ip: string; port: number; protocol: "TCP" | "UDP" };
type Request = { id: number; timeoutMs: number; targets: Target[] };
export type ProbeResult = "ok" | "timeout" | "refused" | `error: ${string}`;

const ports = (flag: string) => {
  const at = process.argv.indexOf(flag);
  return at < 0 ? [] : process.argv[at + 1]!.split(",").map(Number);
};

async function serve(): Promise<void> {
  for (const port of ports("--tcp"))
    Bun.listen({
      hostname: "0.0.0.0",
      port,
      socket: { open: (s) => void s.end(), data() {}, error() {} },
    });
  for (const port of ports("--udp"))
    await Bun.udpSocket({
      hostname: "0.0.0.0",
      port,
      socket: { data: (sock, buf, rport, raddr) => void sock.send(buf, rport, raddr) },
    });
}

function probeTcp(t: Target, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = connect({ host: t.ip, port: t.port });
    const done = (r: ProbeResult) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done("timeout"), timeoutMs);
    sock.once("connect", () => done("ok"));
    sock.once("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNREFUSED" ? "refused" : `error: ${e.code}`));
  });
}

async function probeUdp(t: Target, timeoutMs: number): Promise<ProbeResult> {
  const nonce = `probe-${Math.random().toString(36).slice(2)}`;
  let answered: (r: ProbeResult) => void = () => {};
  const result = new Promise<ProbeResult>((resolve) => {
    answered = resolve;
  });
  const sock = await Bun.udpSocket({
    socket: {
      data: (_s, buf) => void (buf.toString() === nonce && answered("ok")),
      error: () => answered("refused"),
    },
  });
  const sends = [0, timeoutMs / 3, (2 * timeoutMs) / 3].map((at) =>
    setTimeout(() => sock.send(nonce, t.port, t.ip), at),
  );
  const timer = setTimeout(() => answered("timeout"), timeoutMs);
  const r = await result;
  for (const s of [...sends, timer]) clearTimeout(s);
  sock.close();
  return r;
}

async function answer(line: string): Promise<void> {
  const req = JSON.parse(line) as Request;
  const results = await Promise.all(
    req.targets.map((t) => (t.protocol === "UDP" ? probeUdp(t, req.timeoutMs) : probeTcp(t, req.timeoutMs))),
  );
  process.stdout.write(`${JSON.stringify({ id: req.id, results })}\n`);
}

await serve();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
let pending = "";
for await (const chunk of Bun.stdin.stream()) {
  pending += new TextDecoder().decode(chunk);
  for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (line.trim()) void answer(line);
  }
}
process.exit(0);
