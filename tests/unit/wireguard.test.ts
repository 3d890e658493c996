/**
 * The encrypted datapath's plan (pure): tunnel addresses, MTUs, the desired WireGuard
 * device, the diff against a device's dump, the UAPI text both ways, the fail-closed
 * table's script and the kernel path's `wg` formats. The same plan drives a real
 * wireguard-go in tests/host/wireguard.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { keyFromBase64, keyToBase64, pairPsk, publicKeyOf, clamp } from "../../net/crypto/wg-keys.ts";
import {
  describeChanges,
  desiredWireguard,
  diffWireguard,
  encryptedMtus,
  isNoChange,
  throughTunnel,
  tunnelAddress,
  tunnelCidr,
  type WgDeviceState,
  type WgDeviceWant,
  type WgRemote,
} from "../../net/encap/wireguard.ts";
import { answerErrno, parseGet, renderSet } from "../../net/encap/wireguard-uapi.ts";
import { failClosedScript } from "../../net/host/wg-fail-closed.ts";
import { parseWgDump, wgConfig } from "../../net/host/wireguard.ts";
import { desiredTables } from "../../net/encap/vxlan.ts";

const SECRET = new Uint8Array(32).fill(9);
const key = (n: number) => keyToBase64(clamp(new Uint8Array(32).fill(n)));
const pub = (priv: string) => keyToBase64(publicKeyOf(keyFromBase64(priv)));
const N1 = { privateKey: key(1), underlay: "198.18.0.11" };
const N2 = { privateKey: key(2), underlay: "198.18.0.12" };
const N3 = { privateKey: key(3), underlay: "198.18.0.13" };
const remote = (name: string, n: { privateKey: string; underlay: string }): WgRemote => ({
  name,
  ip: n.underlay,
  publicKey: pub(n.privateKey),
});

describe("addressing and MTU", () => {
  test("tunnel addresses keep the underlay's low 27 bits in 240.0.0.0/5", () => {
    expect(tunnelAddress("198.18.0.11")).toBe("246.18.0.11");
    expect(tunnelAddress("10.1.2.3")).toBe("242.1.2.3");
    expect(tunnelAddress("192.168.1.5")).toBe("240.168.1.5");
    expect(tunnelAddress("172.16.0.9")).toBe("244.16.0.9");
    expect(tunnelAddress("255.255.255.255")).toBe("247.255.255.255");
    expect(tunnelCidr("198.18.0.11")).toBe("246.18.0.11/5");
  });

  test("VXLAN's remotes get tunnel addresses as destinations, pods unchanged", () => {
    const remotes = [{ name: "n2", ip: "198.18.0.12", pods: [0x0a200002] }];
    const fdb = desiredTables(throughTunnel(remotes)).fdb;
    expect(fdb.map((f) => f.dst)).toEqual(["246.18.0.12", "246.18.0.12"]);
  });

  test("MTUs: WireGuard 60 bytes, VXLAN 50", () => {
    expect(encryptedMtus({ underlay: 1500 })).toEqual({ wireguard: 1440, overlay: 1390 });
    expect(encryptedMtus({ underlay: 9001 })).toEqual({ wireguard: 8941, overlay: 8891 });
    expect(encryptedMtus({ overlay: 1376 })).toEqual({ wireguard: 1426, overlay: 1376 });
  });
});

describe("the desired device", () => {
  test("one peer per remote: PSK, endpoint, tunnel /32, keepalive; sorted by name", () => {
    const { want, skipped } = desiredWireguard({ ...N1, clusterSecret: SECRET }, [remote("n3", N3), remote("n2", N2)]);
    expect(skipped).toEqual([]);
    expect(want.privateKey).toBe(N1.privateKey);
    expect(want.listenPort).toBe(6785);
    const psk = (a: string, b: string) => keyToBase64(pairPsk(SECRET, keyFromBase64(pub(a)), keyFromBase64(pub(b))));
    expect(want.peers).toEqual([
      {
        publicKey: pub(N2.privateKey),
        presharedKey: psk(N1.privateKey, N2.privateKey),
        endpoint: "198.18.0.12:6785",
        allowedIps: ["246.18.0.12/32"],
        keepalive: 25,
      },
      {
        publicKey: pub(N3.privateKey),
        presharedKey: psk(N1.privateKey, N3.privateKey),
        endpoint: "198.18.0.13:6785",
        allowedIps: ["246.18.0.13/32"],
        keepalive: 25,
      },
    ]);
  });

  test("both ends of a pair derive the same PSK; another password another one", () => {
    const at1 = desiredWireguard({ ...N1, clusterSecret: SECRET }, [remote("n2", N2)]).want.peers[0]!;
    const at2 = desiredWireguard({ ...N2, clusterSecret: SECRET }, [remote("n1", N1)]).want.peers[0]!;
    const wrong = desiredWireguard({ ...N2, clusterSecret: new Uint8Array(32) }, [remote("n1", N1)]).want.peers[0]!;
    expect(at1.presharedKey).toBe(at2.presharedKey);
    expect(wrong.presharedKey).not.toBe(at1.presharedKey);
  });

  test("left out, with the reason: no key yet, a bad key, our own key or address, collisions", () => {
    const { want, skipped } = desiredWireguard({ ...N1, clusterSecret: SECRET, listenPort: 7000 }, [
      { name: "a-nokey", ip: "198.18.0.20" },
      { name: "b-bad", ip: "198.18.0.21", publicKey: "xyz" },
      { name: "c-mine", ip: "198.18.0.22", publicKey: pub(N1.privateKey) },
      { name: "d-here", ip: "190.18.0.11", publicKey: pub(key(4)) },
      { name: "e-ten", ip: "10.1.2.3", publicKey: pub(key(5)) },
      { name: "f-eighteen", ip: "18.1.2.3", publicKey: pub(key(6)) },
      { name: "g-dup", ip: "198.18.0.30", publicKey: pub(key(7)) },
      { name: "h-dup", ip: "198.18.0.31", publicKey: pub(key(7)) },
      { ...remote("n2", N2), port: 7001 },
    ]);
    expect(want.listenPort).toBe(7000);
    expect(want.peers.map((p) => p.endpoint)).toEqual(["198.18.0.12:7001"]);
    expect(skipped).toEqual([
      { name: "a-nokey", reason: "its WireGuard public key is not known yet" },
      { name: "b-bad", reason: "its WireGuard public key is malformed" },
      { name: "c-mine", reason: "its public key is this node's own" },
      { name: "d-here", reason: "its tunnel address 246.18.0.11 (from 190.18.0.11) is this node's own" },
      { name: "e-ten", reason: "its tunnel address 242.1.2.3 (from 10.1.2.3) is also that of f-eighteen (18.1.2.3)" },
      { name: "f-eighteen", reason: "its tunnel address 242.1.2.3 (from 18.1.2.3) is also that of e-ten (10.1.2.3)" },
      { name: "g-dup", reason: "its public key is also that of h-dup" },
      { name: "h-dup", reason: "its public key is also that of g-dup" },
    ]);
  });
});

/** What a device would report once `want` is applied (the test's own get renderer). */
function reported(want: WgDeviceWant): WgDeviceState {
  return {
    privateKey: want.privateKey,
    listenPort: want.listenPort,
    peers: want.peers.map((p) => ({ ...p, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 })),
  };
}

describe("the diff", () => {
  const want = desiredWireguard({ ...N1, clusterSecret: SECRET }, [remote("n2", N2), remote("n3", N3)]).want;
  const [p2, p3] = want.peers as [WgDeviceWant["peers"][0], WgDeviceWant["peers"][0]];

  test("an empty device gets everything", () => {
    const c = diffWireguard(want, { peers: [] });
    expect(c).toEqual({
      privateKey: want.privateKey,
      listenPort: 6785,
      peers: [
        { op: "add", peer: p2 },
        { op: "add", peer: p3 },
      ],
    });
  });

  test("a device in the wanted state needs nothing", () => {
    expect(isNoChange(diffWireguard(want, reported(want)))).toBe(true);
    const reordered = reported(want);
    reordered.peers[0]!.allowedIps = ["246.18.0.12/32"];
    reordered.peers.reverse();
    expect(isNoChange(diffWireguard(want, reordered))).toBe(true);
  });

  test("only what differs: a moved endpoint, a wrong PSK, allowed IPs, a peer gone, a stranger", () => {
    const have = reported(want);
    have.peers[0]!.endpoint = "198.18.9.9:6785";
    have.peers[0]!.presharedKey = key(99);
    have.peers[1]!.allowedIps = ["246.18.0.13/32", "10.0.0.0/8"];
    have.peers[1]!.keepalive = 0;
    have.peers.push({ ...have.peers[1]!, publicKey: pub(key(42)) });
    have.listenPort = 51820;
    expect(diffWireguard(want, have)).toEqual({
      listenPort: 6785,
      peers: [
        { op: "remove", publicKey: pub(key(42)) },
        { op: "update", publicKey: p2.publicKey, presharedKey: p2.presharedKey, endpoint: "198.18.0.12:6785" },
        { op: "update", publicKey: p3.publicKey, keepalive: 25, allowedIps: ["246.18.0.13/32"] },
      ],
    });
  });

  test("descriptions name public keys and endpoints, never a private or pre-shared key", () => {
    const lines = describeChanges(diffWireguard(want, { peers: [] }));
    expect(lines[0]).toBe("set the private key");
    expect(lines[2]).toBe(`add peer ${p2.publicKey.slice(0, 8)}… at 198.18.0.12:6785, allowed 246.18.0.12/32`);
    const text = lines.join("\n");
    for (const secret of [want.privateKey, p2.presharedKey, p3.presharedKey]) expect(text).not.toContain(secret);
  });
});

describe("UAPI text", () => {
  const hex = (b64: string) => Buffer.from(b64, "base64").toString("hex");
  const want = desiredWireguard({ ...N1, clusterSecret: SECRET }, [remote("n2", N2)]).want;
  const p2 = want.peers[0]!;

  test("set=1 for a new device, a removal and an update", () => {
    const c = diffWireguard(want, { peers: [] });
    expect(renderSet(c)).toBe(
      [
        "set=1",
        `private_key=${hex(want.privateKey)}`,
        "listen_port=6785",
        `public_key=${hex(p2.publicKey)}`,
        `preshared_key=${hex(p2.presharedKey)}`,
        "endpoint=198.18.0.12:6785",
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        "allowed_ip=246.18.0.12/32",
        "",
        "",
      ].join("\n"),
    );
    const other = pub(key(42));
    expect(
      renderSet({
        peers: [
          { op: "remove", publicKey: other },
          { op: "update", publicKey: p2.publicKey, endpoint: "198.18.0.99:6785" },
        ],
      }),
    ).toBe(
      `set=1\npublic_key=${hex(other)}\nremove=true\npublic_key=${hex(p2.publicKey)}\nendpoint=198.18.0.99:6785\n\n`,
    );
  });

  test("a get=1 answer as wireguard-go 0.0.20220316 writes it", () => {
    const dump = [
      `private_key=${hex(want.privateKey)}`,
      "listen_port=6785",
      `public_key=${hex(p2.publicKey)}`,
      `preshared_key=${hex(p2.presharedKey)}`,
      "protocol_version=1",
      "endpoint=198.18.0.12:6785",
      "last_handshake_time_sec=1764605000",
      "last_handshake_time_nsec=1234",
      "tx_bytes=1508",
      "rx_bytes=1420",
      "persistent_keepalive_interval=25",
      "allowed_ip=246.18.0.12/32",
      "errno=0",
      "",
      "",
    ].join("\n");
    expect(answerErrno(dump)).toBe(0);
    expect(answerErrno(dump.slice(0, -1))).toBeUndefined();
    expect(answerErrno("errno=22\n\n")).toBe(22);
    const state = parseGet(dump);
    expect(state.peers[0]).toMatchObject({ lastHandshakeSec: 1764605000, txBytes: 1508, rxBytes: 1420 });
    expect(isNoChange(diffWireguard(want, state))).toBe(true);
    expect(parseGet("errno=0\n\n")).toEqual({ peers: [] });
  });
});

describe("fail closed and the kernel path's formats", () => {
  test("the nft table drops VXLAN outside weave-wg, both ways, and counts", () => {
    expect(failClosedScript()).toBe(
      [
        "add table inet weave-wg",
        "delete table inet weave-wg",
        "table inet weave-wg {",
        "  chain output {",
        "    type filter hook output priority filter; policy accept;",
        '    udp dport 6784 oifname != "weave-wg" counter drop comment "weave-wg-plain-vxlan-out"',
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        '    udp dport 6784 iifname != "weave-wg" counter drop comment "weave-wg-plain-vxlan-in"',
        "  }",
        "}",
        "",
      ].join("\n"),
    );
    expect(failClosedScript({ device: "wg7", vxlanPort: 4789 })).toContain('udp dport 4789 oifname != "wg7"');
  });

  test("wg syncconf's file and wg show dump", () => {
    const want = desiredWireguard({ ...N1, clusterSecret: SECRET }, [remote("n2", N2)]).want;
    const p2 = want.peers[0]!;
    expect(wgConfig(want)).toBe(
      `[Interface]\nPrivateKey = ${want.privateKey}\nListenPort = 6785\n\n[Peer]\nPublicKey = ${p2.publicKey}\n` +
        `PresharedKey = ${p2.presharedKey}\nEndpoint = 198.18.0.12:6785\nAllowedIPs = 246.18.0.12/32\nPersistentKeepalive = 25\n`,
    );
    const dump =
      `${want.privateKey}\t${pub(want.privateKey)}\t6785\toff\n` +
      `${p2.publicKey}\t${p2.presharedKey}\t198.18.0.12:6785\t246.18.0.12/32\t0\t0\t0\t25\n`;
    const state = parseWgDump(dump);
    expect(state.publicKey).toBe(pub(want.privateKey));
    expect(isNoChange(diffWireguard(want, state))).toBe(true);
  });
});
