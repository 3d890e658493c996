/**
 * `weave lab password set|rotate`: a password rotation in the lab (README, "Rotating the
 * password"; docs/protocol.md, "Rotation").
 *
 * - `set` rewrites the lab's password file (`<lab dir>/password`, mode 0600; one line, or
 *   two while rotating: current, then next) from WEAVE_PASSWORD [+ WEAVE_PASSWORD_NEXT]
 *   or --password-file, and restarts the agents that read it one at a time, each waited
 *   for (ready, and meshed with every other node of the lab's password) before the next:
 *   the mesh is never down at two nodes at once, and pod traffic keeps flowing through
 *   each restart (the kernel's VXLAN and wireguard-go stay up).
 * - `rotate` is the whole sequence from the lab's current password to a new one: set
 *   "current + new", wait until every agent reports that every peer holds the new one,
 *   then set "new".
 *
 * The password never goes on a command line or into a log: agents get the file's path.
 */
import { existsSync, readFileSync, renameSync } from "node:fs";
import { WeaveError } from "../errors.ts";
import { pidAlive } from "../host/process.ts";
import { meshViews, startAgent, stopAgent, waitAgentReady, writePasswordFile } from "./lab.ts";
import { inNs, type LabTools } from "./plugin.ts";
import { findNode, type LabNode, type LabState, mustReadLab, updateLab } from "./state.ts";

/** The passwords in a password file's bytes, as the agent reads them (one per line, current first). */
export function passwordLines(bytes: Uint8Array): Buffer[] {
  let b = Buffer.from(bytes);
  if (b.at(-1) === 0x0a) b = b.subarray(0, b.length - (b.at(-2) === 0x0d ? 2 : 1));
  const out: Buffer[] = [];
  for (let at = 0; at <= b.length; ) {
    let end = b.indexOf(0x0a, at);
    if (end < 0) end = b.length;
    const line = b.subarray(at, end);
    out.push(line.at(-1) === 0x0d ? line.subarray(0, -1) : line);
    at = end + 1;
  }
  return out;
}

/** The nodes whose agents read the lab's password file (not those added with one of their own). */
const members = (s: LabState) => s.nodes.filter((n) => n.passwordFile === undefined);

/** Rewrite the lab's password file in one step (a new file, renamed over the old). */
function writeLabPassword(s: LabState, content: Uint8Array): void {
  if (!s.passwordFile) throw new WeaveError("E_LAB_PASSWORD", `lab "${s.name}" has no password (give one at lab up)`);
  const lines = passwordLines(content);
  if (lines.length > 2 || lines.some((l) => l.length === 0))
    throw new WeaveError("E_BAD_PASSWORD", "a lab password is one line, or two while rotating (current, then next)");
  const tmp = `${s.passwordFile}.new`;
  writePasswordFile(tmp, content);
  renameSync(tmp, s.passwordFile);
}

/** Wait until every running member reaches every running member. */
async function waitMembersMeshed(tools: LabTools, lab: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = mustReadLab(lab);
    const names = members(s)
      .filter((n) => pidAlive(n.agentPid))
      .map((n) => n.name);
    const views = meshViews(tools, s).filter((v) => names.includes(v.node));
    const whole = (v: (typeof views)[number]) =>
      names.every((m) => v.peers.some((p) => p.nickname === m && p.reachable));
    if (views.length === names.length && views.every(whole)) return;
    if (Date.now() > deadline)
      throw new WeaveError(
        "E_LAB_MESH",
        `the mesh did not connect within ${timeoutMs / 1000}s: ${views.map((v) => `${v.node} reaches ${v.reachable}`).join(", ")}`,
      );
    await Bun.sleep(100);
  }
}

/** `weave lab password set`: the new file, then each member's agent restarted in turn. */
export async function labPasswordSet(
  lab: string,
  tools: LabTools,
  content: Uint8Array,
  o: { timeoutMs?: number } = {},
): Promise<LabNode[]> {
  writeLabPassword(mustReadLab(lab), content);
  const restarted: LabNode[] = [];
  for (const m of members(mustReadLab(lab))) {
    const s = mustReadLab(lab);
    const n = findNode(s, m.name);
    if (!pidAlive(n.agentPid)) continue;
    await stopAgent(n.agentPid);
    const pid = startAgent(tools, n, s);
    const after = updateLab(lab, (state) => {
      const mine = findNode(state, n.name);
      mine.agentPid = pid;
      mine.agentRestarts = (mine.agentRestarts ?? 0) + 1;
    });
    await waitAgentReady(tools, findNode(after, n.name));
    await waitMembersMeshed(tools, lab, o.timeoutMs ?? 30_000);
    tools.log(`agent of ${n.name} restarted with the new password file (pid ${pid})`);
    restarted.push(findNode(after, n.name));
  }
  return restarted;
}

type Rotation = { Passwords: number; Rotating: boolean; WaitingFor: string[]; OldCanBeDropped: boolean };

/** Each running member's view of the rotation, from its /report. */
export function labRotation(tools: LabTools, s: LabState): { node: string; rotation?: Rotation }[] {
  return members(s)
    .filter((n) => pidAlive(n.agentPid))
    .map((n) => {
      const r = inNs(n.netns, [...tools.weave, "report"]);
      if (r.code !== 0) return { node: n.name };
      const rotation = (JSON.parse(r.stdout) as { Router?: { Rotation?: Rotation } }).Router?.Rotation;
      return { node: n.name, rotation };
    });
}

/** `weave lab password rotate`: current -> current + new -> new, never a partition. Returns the agents it started, in order. */
export async function labPasswordRotate(
  lab: string,
  tools: LabTools,
  next: Uint8Array,
  o: { timeoutMs?: number } = {},
): Promise<LabNode[]> {
  const s = mustReadLab(lab);
  if (!s.passwordFile || !existsSync(s.passwordFile))
    throw new WeaveError("E_LAB_PASSWORD", `lab "${lab}" has no password (give one at lab up)`);
  const held = passwordLines(readFileSync(s.passwordFile));
  const nextLines = passwordLines(next);
  if (nextLines.length !== 1 || nextLines[0]!.length === 0)
    throw new WeaveError("E_BAD_PASSWORD", "lab password rotate takes one new password (one line)");
  // from a half-done rotation, carry on from its current password
  const current = held[0]!;
  if (current.equals(nextLines[0]!))
    throw new WeaveError("E_BAD_PASSWORD", "the new password is the lab's current one");
  const both = await labPasswordSet(
    lab,
    tools,
    Buffer.concat([current, Buffer.from("\n"), nextLines[0]!, Buffer.from("\n")]),
    o,
  );
  tools.log("every agent holds both passwords; waiting until each reports that every peer holds the new one");
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    const views = labRotation(tools, mustReadLab(lab));
    if (views.every((v) => v.rotation?.OldCanBeDropped)) break;
    if (Date.now() > deadline) {
      const waiting = views.map((v) => `${v.node} waits for ${v.rotation?.WaitingFor.join(",") || "?"}`).join("; ");
      throw new WeaveError("E_LAB_PASSWORD", `not every peer reported the new password in time: ${waiting}`);
    }
    await Bun.sleep(200);
  }
  const onlyNew = await labPasswordSet(lab, tools, Buffer.concat([nextLines[0]!, Buffer.from("\n")]), o);
  tools.log("the old password is dropped: every agent holds only the new one");
  return [...both, ...onlyNew];
}
