// Matching a request's source address against a key's allowedSources, the way
// the check path does it: keyward's matcher (src/index/cidr.ts: parse the
// address into bytes once, compare bytes against each range) against Node's
// net.BlockList (net.isIP for the family, then BlockList.check). First checks
// that both give the same answer for every address of the mix, then times each
// over the same addresses: a key with 4 entries and one with 64 (the CRD's most).
//
//   node bench/cidr.ts
import { BlockList, isIP } from "node:net";
import { cidrContains, parseCidrs, parseIp, type CidrSet } from "../src/index/cidr.ts";

export interface CidrBenchResult {
  addresses: number;
  /** Nanoseconds per address, parse and match, for a set of `entries` entries. */
  rows: { entries: number; keywardNs: number; blockListNs: number }[];
}

const FEW = ["203.0.113.0/24", "2001:db8::/32", "10.1.2.3/32", "192.168.0.0/20"];
const MANY = [...FEW, ...Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? `172.${16 + (i % 16)}.${i}.0/24` : `2001:db8:${i.toString(16)}::/48`))];

/** Sources as a proxy reports them: in and out of the ranges, IPv4, IPv6, IPv4-mapped IPv6. */
const ADDRESSES = [
  "203.0.113.7", "203.0.114.7", "10.1.2.3", "10.1.2.4", "192.168.15.255", "192.168.16.0", "198.51.100.23", "8.8.8.8",
  "2001:db8:1::42", "2001:db9::1", "2001:db8:21::1", "fe80::1", "::ffff:203.0.113.9", "::ffff:198.51.100.1", "172.20.4.9", "172.17.1.1",
];

type Matcher = (addr: string) => boolean | undefined;

function keywardMatcher(set: CidrSet): Matcher {
  return (addr) => {
    const ip = parseIp(addr);
    return ip === undefined ? undefined : cidrContains(set, ip);
  };
}

function blockListMatcher(entries: readonly string[]): Matcher {
  const list = new BlockList();
  for (const e of entries) {
    const [net = "", bits = ""] = e.split("/");
    const family = isIP(net) === 6 ? "ipv6" : "ipv4";
    list.addSubnet(net, Number(bits), family);
  }
  return (addr) => {
    const family = isIP(addr);
    if (family === 0 || addr.includes("%")) return undefined;
    return list.check(addr, family === 6 ? "ipv6" : "ipv4");
  };
}

/** Median nanoseconds per call over `rounds` rounds of `n` calls each. */
function time(match: Matcher, n: number, rounds: number): number {
  let sink = 0;
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (match(ADDRESSES[i & 15]!) === true) sink++;
    per.push(Number(process.hrtime.bigint() - start) / n);
  }
  if (sink < 0) throw new Error("unreachable");
  per.sort((a, b) => a - b);
  return Math.round(per[Math.floor(rounds / 2)]! * 10) / 10;
}

export function runCidrBench(): CidrBenchResult {
  const rows: CidrBenchResult["rows"] = [];
  for (const entries of [FEW, MANY]) {
    const ours = keywardMatcher(parseCidrs(entries));
    const theirs = blockListMatcher(entries);
    for (const a of ADDRESSES) {
      if (ours(a) !== theirs(a)) throw new Error(`the matchers disagree on ${a}: keyward ${String(ours(a))}, BlockList ${String(theirs(a))}`);
    }
    // Interleaved rounds, so a slow patch of the machine costs both the same.
    const k: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < 5; i++) {
      k.push(time(ours, 200_000, 5));
      b.push(time(theirs, 200_000, 5));
    }
    k.sort((x, y) => x - y);
    b.sort((x, y) => x - y);
    rows.push({ entries: entries.length, keywardNs: k[2]!, blockListNs: b[2]! });
  }
  return { addresses: ADDRESSES.length, rows };
}

if (import.meta.main) {
  const r = runCidrBench();
  for (const row of r.rows) {
    process.stdout.write(`${row.entries} entries: keyward ${row.keywardNs} ns, BlockList ${row.blockListNs} ns per address (parse and match)\n`);
  }
}
