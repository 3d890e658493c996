/**
 * The Noise state machine against the published vectors, and the mesh channel on top
 * of it: XXpsk3 with the PSK from the password, refusals with their reasons on both
 * sides, and sealed frames that do not survive tampering, replay, reordering or cuts.
 */
import { describe, expect, test } from "bun:test";
import { HandshakeState, type Transport } from "../../net/crypto/noise.ts";
import { keyPair } from "../../net/crypto/suite.ts";
import { meshPsk, SCRYPT_PARAMS } from "../../net/crypto/password.ts";
import { Channel, NOISE_PROTOCOL, RefusedError, type MeshSecret } from "../../net/mesh/channel.ts";
import { encodeFrame, FrameType, preamble, ProtocolError } from "../../net/mesh/frame.ts";
import { SealError } from "../../net/mesh/sealed.ts";
import vectorFile from "../vectors/noise-25519-aesgcm-sha256.json";

type Vector = {
  protocol_name: string;
  init_prologue: string;
  resp_prologue: string;
  init_static?: string;
  resp_static?: string;
  init_ephemeral: string;
  resp_ephemeral: string;
  init_remote_static?: string;
  resp_remote_static?: string;
  init_psks?: string[];
  resp_psks?: string[];
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
};

const bytes = (h: string) => Uint8Array.from(Buffer.from(h, "hex"));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const pair = (h?: string) => (h ? keyPair(bytes(h)) : undefined);

describe("Noise test vectors (snow / cacophony, 25519_AESGCM_SHA256)", () => {
  const vectors = vectorFile.vectors as Vector[];

  test("the file holds XXpsk3, the mesh's pattern", () => {
    expect(vectors.filter((v) => v.protocol_name === NOISE_PROTOCOL).length).toBeGreaterThan(0);
    expect(vectors.length).toBe(64);
  });

  test.each(vectors.map((v, i) => [`${v.protocol_name} (${i})`, v] as const))("%s byte for byte", (_, v) => {
    const side = (initiator: boolean) =>
      new HandshakeState({
        protocol: v.protocol_name,
        initiator,
        prologue: bytes(initiator ? v.init_prologue : v.resp_prologue),
        s: pair(initiator ? v.init_static : v.resp_static),
        e: pair(initiator ? v.init_ephemeral : v.resp_ephemeral),
        rs: (initiator ? v.init_remote_static : v.resp_remote_static)
          ? bytes((initiator ? v.init_remote_static : v.resp_remote_static)!)
          : undefined,
        psks: (initiator ? v.init_psks : v.resp_psks)?.map(bytes),
      });
    const init = side(true);
    const resp = side(false);
    const oneWay = !/^Noise_[A-Z]{2}/.test(v.protocol_name);
    let transport: { init: Transport; resp: Transport } | undefined;
    v.messages.forEach((m, i) => {
      const payload = bytes(m.payload);
      if (!transport) {
        const [writer, reader] = init.myTurn ? [init, resp] : [resp, init];
        const ciphertext = writer.writeMessage(payload);
        expect(hex(ciphertext)).toBe(m.ciphertext);
        expect(hex(reader.readMessage(ciphertext))).toBe(m.payload);
        if (init.finished) {
          transport = { init: init.split(), resp: resp.split() };
          expect(hex(transport.init.handshakeHash)).toBe(hex(transport.resp.handshakeHash));
          if (v.handshake_hash) expect(hex(transport.init.handshakeHash)).toBe(v.handshake_hash);
        }
        return;
      }
      const fromInitiator = oneWay || i % 2 === 0;
      const [writer, reader] = fromInitiator ? [transport.init, transport.resp] : [transport.resp, transport.init];
      const ciphertext = writer.send.encryptWithAd(new Uint8Array(0), payload);
      expect(hex(ciphertext)).toBe(m.ciphertext);
      expect(hex(reader.recv.decryptWithAd(new Uint8Array(0), ciphertext))).toBe(m.payload);
    });
    expect(transport).toBeDefined();
  });
});

/** Two channels joined by queues: what one sends, the other receives, until both are quiet. */
function wire(a: ChannelSetup, b: ChannelSetup) {
  const out = { a: [] as Uint8Array[], b: [] as Uint8Array[] };
  const side = (me: "a" | "b", s: ChannelSetup, outbound: boolean) =>
    new Channel({
      outbound,
      address: outbound ? "198.18.0.12:6783" : "198.18.0.11:40000",
      versions: s.versions ?? { min: 1, max: 2 },
      secret: s.secret,
      send: (bytes) => out[me].push(bytes),
    });
  const ch = { a: side("a", a, true), b: side("b", b, false) };
  const got = { a: [] as string[], b: [] as string[] };
  const opened = { a: false, b: false };
  const errors: { a?: Error; b?: Error } = {};
  const closed = { a: false, b: false };
  /** Deliver queued bytes, letting `tamper` see (and change) each one on its way to b. */
  const pump = (tamper: (bytes: Uint8Array, to: "a" | "b") => Uint8Array[] = (x) => [x]) => {
    for (let moved = true; moved; ) {
      moved = false;
      for (const [from, to] of [
        ["a", "b"],
        ["b", "a"],
      ] as const) {
        while (out[from].length) {
          const chunk = out[from].shift()!;
          moved = true;
          if (closed[to]) continue;
          for (const piece of tamper(chunk, to)) {
            try {
              const r = ch[to].push(piece);
              opened[to] ||= r.opened;
              for (const f of r.frames) got[to].push(`${String.fromCharCode(f.type)}:${f.text()}`);
            } catch (e) {
              errors[to] = e as Error;
              closed[to] = true;
              break;
            }
          }
        }
      }
    }
  };
  ch.a.start();
  ch.b.start();
  return { ch, out, got, opened, errors, closed, pump };
}
type ChannelSetup = { secret?: MeshSecret; versions?: { min: number; max: number } };

const psk = (n: number) => new Uint8Array(32).fill(n);
const secret = (n: number): MeshSecret => ({ psk: psk(n), staticKey: keyPair() });

describe("the mesh channel", () => {
  test("same PSK: both ends open, encrypted, each learns the other's static key, frames pass both ways", () => {
    const sa = secret(7);
    const sb = secret(7);
    const w = wire({ secret: sa }, { secret: sb });
    w.pump();
    expect(w.opened).toEqual({ a: true, b: true });
    expect(w.ch.a.encrypted && w.ch.b.encrypted).toBe(true);
    expect(hex(w.ch.a.remoteStatic!)).toBe(hex(sb.staticKey.publicKey));
    expect(hex(w.ch.b.remoteStatic!)).toBe(hex(sa.staticKey.publicKey));
    expect(w.ch.a.awaitingProof).toBe(true);
    w.ch.b.sendFrame(encodeFrame(FrameType.Hello, "from b"));
    w.ch.a.sendFrame(encodeFrame(FrameType.Hello, "from a"));
    w.pump();
    expect(w.got).toEqual({ a: ["H:from b"], b: ["H:from a"] });
    expect(w.ch.a.awaitingProof).toBe(false);
  });

  test("no plaintext after the handshake: the payload is nowhere in the bytes on the wire", () => {
    const w = wire({ secret: secret(7) }, { secret: secret(7) });
    w.pump();
    const seen: string[] = [];
    w.ch.a.sendFrame(encodeFrame(FrameType.Gossip, "secret-topology-line"));
    w.pump((x) => {
      seen.push(Buffer.from(x).toString("latin1"));
      return [x];
    });
    expect(w.got.b).toEqual(["G:secret-topology-line"]);
    expect(seen.join("")).not.toContain("secret-topology-line");
  });

  test("another PSK: the listener refuses at the last message, the dialler when it hangs up", () => {
    const w = wire({ secret: secret(1) }, { secret: secret(2) });
    w.pump();
    expect(w.errors.b).toBeInstanceOf(RefusedError);
    expect(w.errors.b!.message).toBe(
      "handshake with 198.18.0.11:40000 failed: wrong password or not a weave peer " +
        "(its last handshake message did not open; peers must share WEAVE_PASSWORD and IPALLOC_RANGE): refused",
    );
    expect(w.errors.a).toBeUndefined();
    expect(w.ch.a.awaitingProof).toBe(true);
    expect(w.ch.a.hungUp()).toContain("handshake with 198.18.0.12:6783 failed: wrong password or not a weave peer");
    expect(w.opened.b).toBe(false);
  });

  test("a password on one side only: both sides refuse, each naming the reason", () => {
    const w = wire({ secret: secret(1) }, {});
    w.pump();
    expect(w.errors.a?.message).toBe("peer at 198.18.0.12:6783 has no password: refused");
    expect(w.errors.b?.message).toBe("peer at 198.18.0.11:40000 has a password and we have none: refused");
    const v = wire({}, { secret: secret(1) });
    v.pump();
    expect(v.errors.a?.message).toBe("peer at 198.18.0.12:6783 has a password and we have none: refused");
    expect(v.errors.b?.message).toBe("peer at 198.18.0.11:40000 has no password: refused");
  });

  test("a peer of protocol 1 only (no encryption) is refused by a peer with a password", () => {
    const w = wire({ versions: { min: 1, max: 1 } }, { secret: secret(1) });
    w.pump();
    expect(w.errors.b?.message).toContain("speaks only mesh protocol 1, which cannot encrypt");
    const plain = wire({ versions: { min: 1, max: 1 } }, {});
    plain.pump();
    expect(plain.opened).toEqual({ a: true, b: true });
    expect(plain.ch.a.encrypted).toBe(false);
  });

  test("the prologue binds the preambles: a rewritten version range fails the handshake", () => {
    const w = wire({ secret: secret(3) }, { secret: secret(3) });
    const honest = hex(preamble(1, 2));
    w.pump((x, to) => (to === "a" && hex(x) === honest ? [preamble(2, 2)] : [x]));
    // In a PSK pattern the first message's (empty) payload is already sealed over the prologue.
    expect(w.errors.b).toBeInstanceOf(RefusedError);
    expect(w.errors.b!.message).toBe(
      "handshake with 198.18.0.11:40000 failed: authentication failed: not a weave peer: refused",
    );
    expect(w.opened).toEqual({ a: false, b: false });
  });
});

describe("sealed frames", () => {
  /** An open pair, and the next `n` records a sends, captured instead of delivered. */
  const records = (n: number) => {
    const w = wire({ secret: secret(9) }, { secret: secret(9) });
    w.pump();
    w.ch.b.sendFrame(encodeFrame(FrameType.Heartbeat));
    w.pump();
    const sent: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      w.ch.a.sendFrame(encodeFrame(FrameType.Gossip, `line ${i}`));
      sent.push(w.out.a.shift()!);
    }
    const deliver = (...rs: Uint8Array[]) => {
      w.out.a.push(...rs);
      w.pump();
    };
    return { w, sent, deliver };
  };

  test("in order, they open", () => {
    const { w, sent, deliver } = records(3);
    deliver(...sent);
    expect(w.got.b).toEqual(["G:line 0", "G:line 1", "G:line 2"]);
  });

  const rejected = (w: ReturnType<typeof records>["w"]) => {
    expect(w.errors.b).toBeInstanceOf(SealError);
    expect(w.errors.b).toBeInstanceOf(ProtocolError);
    expect(w.errors.b!.message).toMatch(/^sealed frame \d+ failed authentication/);
  };

  test("a flipped bit anywhere in a record is rejected", () => {
    for (const at of [4, 6, 9, 20]) {
      const { w, sent, deliver } = records(1);
      const bad = sent[0]!.slice();
      bad[at]! ^= 0x01;
      deliver(bad);
      expect(w.got.b).toEqual([]);
      rejected(w);
    }
  });

  test("a replayed record is rejected", () => {
    const { w, sent, deliver } = records(2);
    deliver(sent[0]!, sent[0]!);
    expect(w.got.b).toEqual(["G:line 0"]);
    rejected(w);
    expect(w.errors.b!.message).toStartWith("sealed frame 1 ");
  });

  test("reordered records are rejected", () => {
    const { w, sent, deliver } = records(2);
    deliver(sent[1]!, sent[0]!);
    expect(w.got.b).toEqual([]);
    rejected(w);
  });

  test("a dropped record makes the next one fail", () => {
    const { w, sent, deliver } = records(2);
    deliver(sent[1]!);
    rejected(w);
  });

  test("a truncated record, its length rewritten to match, is rejected; cut short, it never opens", () => {
    const { w, sent, deliver } = records(1);
    const cut = sent[0]!.slice(0, sent[0]!.length - 3);
    new DataView(cut.buffer).setUint32(0, cut.length - 4);
    deliver(cut);
    rejected(w);
    const short = records(1);
    short.deliver(sent[0]!.slice(0, 10));
    expect(short.w.got.b).toEqual([]);
    expect(short.w.errors.b).toBeUndefined();
  });

  test("a record from another connection (same PSK) does not open here", () => {
    const one = records(1);
    const two = records(1);
    two.deliver(one.sent[0]!);
    rejected(two.w);
  });

  test("the dialler takes a listener's first sealed frame that does not open as a wrong password", () => {
    const w = wire({ secret: secret(4) }, { secret: secret(4) });
    w.pump();
    w.ch.b.sendFrame(encodeFrame(FrameType.Hello, "{}"));
    const forged = w.out.b.shift()!.slice();
    forged[forged.length - 1]! ^= 0x80;
    w.out.b.push(forged);
    w.pump();
    expect(w.errors.a).toBeInstanceOf(RefusedError);
    expect(w.errors.a!.message).toContain("wrong password or not a weave peer (its first sealed frame did not open");
  });
});

describe("the PSK from the password", () => {
  test("scrypt, N = 2^15, r = 8: the same for the same password and range, different otherwise", () => {
    expect(SCRYPT_PARAMS).toEqual({ N: 2 ** 15, r: 8, p: 1 });
    const fast = { N: 2 ** 10, r: 8, p: 1 } as const;
    const pw = new TextEncoder().encode("correct horse battery staple");
    const k = meshPsk(pw, "10.32.0.0/12", fast);
    expect(k.length).toBe(32);
    expect(hex(meshPsk(pw, "10.32.0.0/12", fast))).toBe(hex(k));
    expect(hex(meshPsk(pw, "10.40.0.0/16", fast))).not.toBe(hex(k));
    expect(hex(meshPsk(new TextEncoder().encode("correct horse battery stapler"), "10.32.0.0/12", fast))).not.toBe(
      hex(k),
    );
  });
  test("the real cost is tens of milliseconds, once per start", () => {
    const t0 = performance.now();
    meshPsk(new TextEncoder().encode("pw"), "10.32.0.0/12");
    expect(performance.now() - t0).toBeGreaterThan(20);
  });
});
