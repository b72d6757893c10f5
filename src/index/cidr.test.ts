import { BlockList, isIP } from "node:net";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../test/support/random.ts";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import { cidrContains, parseCidrs, parseIp } from "./cidr.ts";
import { KeyIndex, keyDigest } from "./keys.ts";

describe("CIDR sets", () => {
  const set = parseCidrs(["203.0.113.0/24", "2001:db8::/32", "10.1.2.3", "::1/128"]);
  const inSet = (ip: string): boolean => {
    const b = parseIp(ip);
    return b !== undefined && cidrContains(set, b);
  };

  it("matches IPv4 addresses inside a range and rejects those outside", () => {
    expect(inSet("203.0.113.7")).toBe(true);
    expect(inSet("203.0.114.7")).toBe(false);
    expect(inSet("10.1.2.3")).toBe(true);
    expect(inSet("10.1.2.4")).toBe(false);
  });

  it("matches IPv6, compressed or not, and treats IPv4-mapped IPv6 as IPv4", () => {
    expect(inSet("2001:db8:1::42")).toBe(true);
    expect(inSet("2001:0db8:0000:0000:0000:0000:0000:0001")).toBe(true);
    expect(inSet("2001:db9::1")).toBe(false);
    expect(inSet("::1")).toBe(true);
    expect(inSet("::ffff:203.0.113.9")).toBe(true);
    expect(inSet("::ffff:cb00:7109")).toBe(true); // the same, in hex
    expect(inSet("[2001:db8::1]")).toBe(true);
  });

  it("reads every IPv6 shape into the same bytes", () => {
    const hex = (s: string): string | undefined => {
      const b = parseIp(s);
      return b && Buffer.from(b).toString("hex");
    };
    expect(hex("::")).toBe("0".repeat(32));
    expect(hex("1::")).toBe("0001" + "0".repeat(28));
    expect(hex("::1:2")).toBe("0".repeat(24) + "00010002");
    expect(hex("1:2:3:4:5:6:7:8")).toBe("00010002000300040005000600070008");
    expect(hex("1:2:3::6:7:8")).toBe("00010002000300000000000600070008");
    expect(hex("64:ff9b::192.0.2.33")).toBe("0064ff9b0000000000000000c0000221");
    expect(hex("::ffff:1.2.3.4")).toBe("01020304");
  });

  it("handles prefixes that are not byte-aligned", () => {
    const s = parseCidrs(["192.168.0.0/20"]);
    expect(cidrContains(s, parseIp("192.168.15.255")!)).toBe(true);
    expect(cidrContains(s, parseIp("192.168.16.0")!)).toBe(false);
    expect(cidrContains(parseCidrs(["0.0.0.0/0"]), parseIp("8.8.8.8")!)).toBe(true);
  });

  it("rejects what is not an address", () => {
    for (const bad of ["", "1.2.3", "1.2.3.256", "1::2::3", "zz::1", "1.2.3.4.5", "::ffff:1.2.3", ":1", "1:", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", "12345::1", "[1.2.3.4]", "[::1", "::1]"]) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });

  it("refuses the spellings two parsers read differently: leading zeros, other radixes, zones, whitespace", () => {
    const bad = [
      "010.0.0.1", // 8.0.0.1 to an octal reader, 10.0.0.1 to a decimal one
      "10.0.0.01",
      "00.0.0.0",
      "1.2.3.004",
      "::ffff:010.0.0.1",
      "0x0a.0.0.1",
      "10.1", // 10.0.0.1 to inet_aton
      "167772161", // 10.0.0.1 as one number
      "+1.2.3.4",
      "1.2.3.-4",
      "1.2.3.4.",
      "１.2.3.4", // a full-width digit
      "fe80::1%eth0", // a zone: the same address on another link
      "[fe80::1%eth0]",
      "fe80::1%",
      " 10.0.0.1",
      "10.0.0.1 ",
      "10.0.0.1\n",
      "\t2001:db8::1",
      "2001:db8::1 ",
    ];
    for (const s of bad) expect(parseIp(s), JSON.stringify(s)).toBeUndefined();
    for (const s of ["0.0.0.0", "10.0.0.0", "100.100.100.100", "255.255.255.255"]) expect(parseIp(s), s).toBeDefined();
  });

  it("refuses allowedSources entries that are not one CIDR or address in its one spelling", () => {
    const bad = [
      "10.0.0.0/", // Number("") is 0: read loosely, this would allow every address
      "10.0.0.0/08",
      "10.0.0.0/+8",
      "10.0.0.0/ 8",
      "10.0.0.0/8 ",
      " 10.0.0.0/8",
      "10.0.0.0/0x8",
      "10.0.0.0/8e0",
      "10.0.0.0/8.0",
      "10.0.0.0/33",
      "10.0.0.0/8/8",
      "2001:db8::/129",
      "010.0.0.0/8",
      "[2001:db8::]/32",
      "fe80::%eth0/64",
      "::ffff:10.0.0.0/104", // IPv4-mapped: write 10.0.0.0/8
      "::ffff:10.0.0.1",
    ];
    for (const c of bad) expect(() => parseCidrs([c]), JSON.stringify(c)).toThrow(expect.objectContaining({ code: "ManifestInvalid" }) as Error);
    expect(() => parseCidrs(["10.0.0.0/8", "10.0.0.0/"])).toThrow(/invalid prefix length/);
  });

  it("leaves a key with a loosely written entry (10.0.0.0/, read as /0 by Number) open to no source rather than every one", () => {
    const problems: string[] = [];
    const idx = new KeyIndex({ onInvalid: (_ref, what) => problems.push(what) });
    const k = newKey("p_loose");
    idx.apply("add", apiKey("ns", "k", { allowedSources: ["198.51.100.0/24", "10.0.0.0/"] }, [k.version]));
    const sources = idx.lookup(keyDigest(k.key))?.record.sources;
    expect(sources?.ranges).toEqual([]);
    for (const ip of ["10.0.0.1", "8.8.8.8", "198.51.100.7"]) expect(cidrContains(sources!, parseIp(ip)!), ip).toBe(false);
    expect(problems).toEqual(['allowedSources: "10.0.0.0/" has an invalid prefix length']);
  });

  it("takes a bare address as one host", () => {
    const host = parseCidrs(["10.1.2.3", "2001:db8::7"]);
    expect(host.ranges.map((r) => r.prefix)).toEqual([32, 128]);
    expect(cidrContains(host, parseIp("10.1.2.2")!)).toBe(false);
    expect(cidrContains(host, parseIp("2001:db8::7")!)).toBe(true);
    expect(cidrContains(host, parseIp("2001:db8::8")!)).toBe(false);
  });

  it("accepts exactly what Node's strict parser accepts (less zones) and matches within a family as net.BlockList does, over mutated addresses", () => {
    const random = seededRandom(20261201); // so a failure reproduces
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const seeds = ["10.0.0.1", "203.0.113.255", "0.0.0.0", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1:2:3:4", "1:2:3:4:5:6:7:8", "::", "64:ff9b::1.2.3.4"];
    const alphabet = "0123456789abcdefABCDEF.:% 0001::".split("");
    let accepted = 0;
    let compared = 0;
    const valid: string[] = [];
    for (let n = 0; n < 20_000; n++) {
      const chars = pick(seeds).split("");
      for (let m = 1 + Math.floor(random() * 3); m > 0; m--) {
        const at = Math.floor(random() * (chars.length + 1));
        const op = random();
        if (op < 0.4) chars.splice(at, 1);
        else if (op < 0.7) chars.splice(at, 0, pick(alphabet));
        else chars[at] = pick(alphabet);
      }
      const s = chars.join("");
      const ours = parseIp(s) !== undefined;
      const node = isIP(s) !== 0 && !s.includes("%");
      expect(ours, JSON.stringify(s)).toBe(node);
      if (ours) {
        accepted++;
        valid.push(s);
      }
    }
    expect(accepted).toBeGreaterThan(1000);
    for (let n = 0; n < 5000; n++) {
      const net = pick(valid);
      const addr = pick(valid);
      const bytes = parseIp(net)!;
      const prefix = Math.floor(random() * (bytes.length * 8 + 1));
      if (bytes.length === 4 && net.includes(":")) continue; // refused as an entry
      // BlockList also lets an IPv6 range that covers ::ffff:0:0/96 match IPv4 addresses;
      // keyward keeps the families apart (an IPv4 client matches IPv4 entries only).
      if (parseIp(addr)!.length !== bytes.length) continue;
      const list = new BlockList();
      list.addSubnet(net, prefix, isIP(net) === 6 ? "ipv6" : "ipv4");
      const theirs = list.check(addr, isIP(addr) === 6 ? "ipv6" : "ipv4");
      expect(cidrContains(parseCidrs([`${net}/${prefix}`]), parseIp(addr)!), `${addr} in ${net}/${prefix}`).toBe(theirs);
      compared++;
    }
    expect(compared).toBeGreaterThan(1000);
  });
});
