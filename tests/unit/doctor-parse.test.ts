/** doctor's readers of probe output: HTTP, `ip -j`, `nft list ruleset`, agent logs, CNI conf dirs, FDB MACs. */
import { describe, expect, test } from "bun:test";
import {
  parseAddrs,
  parseHttp,
  parseLinks,
  parseNftDrops,
  parseReport,
  parseRoutes,
  portExprIncludes,
  recentErrorLines,
} from "../../net/doctor/parse.ts";
import { networkConfigs } from "../../net/doctor/checks-cni.ts";
import { ipFromPodMac } from "../../net/doctor/gather/node.ts";
import { wrap } from "../../net/doctor/format.ts";

describe("parse", () => {
  test("a raw HTTP/1.1 answer, and what is not one", () => {
    expect(parseHttp("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\n\r\nwaiting")).toEqual({
      status: 503,
      body: "waiting",
    });
    expect(parseHttp('HTTP/1.0 200 OK\r\n\r\n{"a":1}\n')).toEqual({ status: 200, body: '{"a":1}\n' });
    expect(parseHttp("garbage")).toBeUndefined();
    expect(
      parseReport('{"Ready":true,"IPAM":{"Range":"10.32.0.0/12","Status":"ready"},"Router":null,"Bridge":null}')?.Ready,
    ).toBe(true);
    expect(parseReport("{}")).toBeUndefined();
    expect(parseReport("not json")).toBeUndefined();
  });

  test("ip -j -d link: kind, up, master and the VXLAN port and local address", () => {
    const json = JSON.stringify([
      {
        ifname: "weave",
        flags: ["BROADCAST", "UP", "LOWER_UP"],
        mtu: 1450,
        linkinfo: { info_kind: "bridge", info_data: {} },
      },
      {
        ifname: "vxlan-6784",
        flags: ["BROADCAST", "UP"],
        mtu: 1450,
        master: "weave",
        linkinfo: { info_kind: "vxlan", info_data: { id: 7824737, local: "198.18.0.11", port: 6784 } },
      },
      { ifname: "eth0", flags: ["BROADCAST"], mtu: 1500 },
    ]);
    expect(parseLinks(json)).toEqual([
      { name: "weave", kind: "bridge", up: true, mtu: 1450 },
      {
        name: "vxlan-6784",
        kind: "vxlan",
        up: true,
        mtu: 1450,
        master: "weave",
        vxlanPort: 6784,
        vxlanLocal: "198.18.0.11",
      },
      { name: "eth0", kind: undefined, up: false, mtu: 1500 },
    ]);
  });

  test("ip -j addr and route", () => {
    expect(
      parseAddrs(
        JSON.stringify([
          {
            ifname: "eth0",
            addr_info: [
              { family: "inet", local: "198.18.0.11", prefixlen: 24 },
              { family: "inet6", local: "fe80::1", prefixlen: 64 },
            ],
          },
        ]),
      ),
    ).toEqual([{ ifname: "eth0", ip: "198.18.0.11", prefix: 24 }]);
    expect(
      parseRoutes(
        JSON.stringify([
          { dst: "default", gateway: "10.32.0.1", dev: "eth0" },
          { type: "local", dst: "10.32.0.1", dev: "weave", table: "local" },
        ]),
      ),
    ).toEqual([
      { dst: "0.0.0.0/0", gateway: "10.32.0.1", dev: "eth0" },
      { dst: "10.32.0.1/32", dev: "weave", table: "local", type: "local" },
    ]);
  });

  test("nft port expressions", () => {
    expect(portExprIncludes("6784", 6784)).toBe(true);
    expect(portExprIncludes("{ 22, 6783 }", 6783)).toBe(true);
    expect(portExprIncludes("6000-7000", 6784)).toBe(true);
    expect(portExprIncludes("{ 22, 80 }", 6783)).toBe(false);
  });

  test("nftables rules that drop the mesh or VXLAN port, certainly or maybe", () => {
    const ruleset = `table ip weave {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.32.0.0/12 ip daddr != 10.32.0.0/12 oifname != "weave" masquerade comment "weave-masq"
	}
}
table inet fw { # handle 7
	chain input { # handle 1
		type filter hook input priority filter; policy accept;
		ct state invalid drop
		udp dport 6784 drop # handle 4
		tcp dport { 22, 6783 } reject
		tcp dport 22 drop
		udp dport != 53 counter packets 0 bytes 0 drop
		ip saddr 198.18.0.12 drop
		icmp type echo-request drop
	}
	chain output {
		type filter hook output priority filter; policy drop;
		ip daddr 1.2.3.4 accept
	}
}
table inet other {
	chain forward {
		type filter hook forward priority filter; policy accept;
		meta l4proto udp drop
		udp dport 6000-7000 ip saddr 10.0.0.0/8 drop
	}
}`;
    const d = parseNftDrops(ruleset).map(
      (x) => `${x.table}/${x.chain} ${x.proto} ${x.port} ${x.certain ? "sure" : "maybe"}: ${x.rule}`,
    );
    expect(d).toEqual([
      "inet fw/input udp 6784 sure: udp dport 6784 drop",
      "inet fw/input tcp 6783 sure: tcp dport { 22, 6783 } reject",
      "inet fw/input udp 6784 sure: udp dport != 53 counter packets 0 bytes 0 drop",
      "inet fw/input udp 6785 sure: udp dport != 53 counter packets 0 bytes 0 drop",
      "inet fw/input tcp 6783 maybe: ip saddr 198.18.0.12 drop",
      "inet fw/input udp 6784 maybe: ip saddr 198.18.0.12 drop",
      "inet fw/input udp 6785 maybe: ip saddr 198.18.0.12 drop",
      "inet fw/output tcp 6783 maybe: policy drop (hook output)",
      "inet fw/output udp 6784 maybe: policy drop (hook output)",
      "inet fw/output udp 6785 maybe: policy drop (hook output)",
      "inet other/forward udp 6784 sure: meta l4proto udp drop",
      "inet other/forward udp 6785 sure: meta l4proto udp drop",
      "inet other/forward udp 6784 maybe: udp dport 6000-7000 ip saddr 10.0.0.0/8 drop",
      "inet other/forward udp 6785 maybe: udp dport 6000-7000 ip saddr 10.0.0.0/8 drop",
    ]);
    expect(parseNftDrops("")).toEqual([]);
  });

  test("the lab's own cut table is found", () => {
    const cut =
      "table inet weavelabcut {\n\tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n\t\ttcp dport 6783 drop\n\t\ttcp sport 6783 drop\n\t\tudp dport 6784 drop\n\t}\n}\n";
    expect(parseNftDrops(cut).map((x) => `${x.proto} ${x.certain}`)).toEqual(["tcp true", "udp true"]);
  });

  test("recent error lines of an agent log", () => {
    const now = Date.parse("2026-11-23T12:00:00Z");
    const lines = [
      "2026-11-23T11:59:00.000Z weave-agent: ready: bridge weave 10.32.0.1/12 mtu 1450",
      "2026-11-23T11:59:30.000Z weave-agent: mesh: connection to n2 (x) at 198.18.0.12:6783 lost: nothing heard for 7s",
      "2026-11-23T11:00:00.000Z weave-agent: datapath: fdb add failed",
      "    at Object.<anonymous> (failed)",
      "2026-11-23T11:59:40.000Z weave-agent: ipam: out of space: asking peers for some",
    ];
    expect(recentErrorLines(lines, now, 10 * 60_000)).toEqual([lines[1]!]);
  });

  test("CNI conf dir: what counts as a network config, in the runtime's order", () => {
    const r = networkConfigs([
      { name: "10-weave.conflist", text: JSON.stringify({ plugins: [{ type: "weave-net" }, { type: "portmap" }] }) },
      { name: "05-calico.conf", text: JSON.stringify({ type: "calico" }) },
      { name: "99-lo.conf", text: JSON.stringify({ type: "loopback" }) },
      { name: "bad.json", text: "{" },
      { name: "unreadable.conf" },
      { name: "notes.txt", text: "{}" },
    ]);
    expect(r.configs.map((c) => `${c.name}:${c.ours}`)).toEqual(["05-calico.conf:false", "10-weave.conflist:true"]);
    expect(r.ignored).toEqual(["99-lo.conf (only loopback)", "bad.json (not JSON)", "unreadable.conf (not JSON)"]);
  });

  test("a pod address from the MAC the agent derived from it", () => {
    expect(ipFromPodMac("0a:58:0a:25:55:57")).toBe("10.37.85.87");
    expect(ipFromPodMac("46:27:cd:78:3c:ad")).toBeUndefined();
  });

  test("wrap", () => {
    expect(wrap("aaa bbb ccc", 7, "  ")).toBe("aaa bbb\n  ccc");
  });
});
