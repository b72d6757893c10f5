import { describe, expect, it } from "vitest";
import { cidrContains, parseCidrs, parseIp } from "./cidr.ts";

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
    expect(inSet("[2001:db8::1]")).toBe(true);
  });

  it("handles prefixes that are not byte-aligned", () => {
    const s = parseCidrs(["192.168.0.0/20"]);
    expect(cidrContains(s, parseIp("192.168.15.255")!)).toBe(true);
    expect(cidrContains(s, parseIp("192.168.16.0")!)).toBe(false);
    expect(cidrContains(parseCidrs(["0.0.0.0/0"]), parseIp("8.8.8.8")!)).toBe(true);
  });

  it("rejects what is not an address", () => {
    for (const bad of ["", "1.2.3", "1.2.3.256", "1::2::3", "zz::1", "1.2.3.4.5", "::ffff:1.2.3"]) expect(parseIp(bad)).toBeUndefined();
    expect(() => parseCidrs(["10.0.0.0/33"])).toThrow();
  });
});
