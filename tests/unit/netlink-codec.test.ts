import { describe, expect, test } from "bun:test";
import * as c from "../../net/host/netlink-codec.ts";

describe("netlink codec", () => {
  test("attributes are aligned and read back, nested included", () => {
    const attrs = [
      c.strAttr(c.IFLA.IFNAME, "eth0"),
      c.u32Attr(c.IFLA.MTU, 1450),
      c.nest(c.IFLA.LINKINFO, [c.strAttr(c.IFLA_INFO.KIND, "veth")]),
    ];
    const buf = c.encodeAttrs(attrs);
    expect(buf.length % 4).toBe(0);
    const m = c.decodeAttrs(buf);
    expect(c.cString(m.get(c.IFLA.IFNAME)!)).toBe("eth0");
    expect(c.readU32(m.get(c.IFLA.MTU))).toBe(1450);
    expect(c.cString(c.decodeAttrs(m.get(c.IFLA.LINKINFO)!).get(c.IFLA_INFO.KIND)!)).toBe("veth");
  });

  test("a message has the netlink header and round-trips", () => {
    const msg = c.encodeMessage(c.RTM.NEWLINK, c.NLM_F.REQUEST | c.NLM_F.ACK, 7, c.ifinfomsg({ index: 3 }), [
      c.u32Attr(c.IFLA.MTU, 1500),
    ]);
    const dv = new DataView(msg.buffer);
    expect(dv.getUint32(0, true)).toBe(msg.length);
    expect(dv.getUint16(4, true)).toBe(c.RTM.NEWLINK);
    const [back] = c.decodeMessages(msg);
    expect(back!.seq).toBe(7);
    expect(new DataView(back!.payload.buffer, back!.payload.byteOffset).getInt32(4, true)).toBe(3);
  });

  test("truncated or garbage input is ignored, not misread", () => {
    expect(c.decodeMessages(new Uint8Array([1, 2, 3]))).toEqual([]);
    expect(c.decodeMessages(Uint8Array.from([200, 0, 0, 0, ...new Array(16).fill(0)]))).toEqual([]);
    expect(c.decodeAttrs(Uint8Array.from([2, 0, 1, 0]))).toEqual(new Map());
  });

  test("byte helpers", () => {
    expect(c.macString(c.macBytes("0a:58:0a:20:00:05"))).toBe("0a:58:0a:20:00:05");
    expect(c.ipv4String(c.ipv4Bytes("198.18.0.11"))).toBe("198.18.0.11");
    expect([...c.u16Attr(15, 6784, true).data]).toEqual([0x1a, 0x80]);
  });
});
