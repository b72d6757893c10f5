// CIDR sets for ApiKey.spec.allowedSources: IPv4 and IPv6, parsed once when the
// key is indexed; a request's source address is parsed once and tested against
// each range with byte comparisons. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d)
// count as IPv4.

interface Range {
  bytes: Uint8Array; // 4 or 16
  prefix: number;
}

export interface CidrSet {
  readonly ranges: readonly Range[];
}

/** Parses an IP address into 4 (IPv4, including IPv4-mapped IPv6) or 16 bytes; undefined if it is not one. */
export function parseIp(text: string): Uint8Array | undefined {
  let s = text;
  // Drop a zone (fe80::1%eth0) and surrounding brackets.
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone !== -1) s = s.slice(0, zone);
  if (s.includes(":")) {
    const v6 = parseIpv6(s);
    if (!v6) return undefined;
    if (isV4Mapped(v6)) return v6.subarray(12);
    return v6;
  }
  return parseIpv4(s);
}

function parseIpv4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] ?? "";
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseIpv6(s: string): Uint8Array | undefined {
  let head = s;
  let tail = "";
  const dbl = s.indexOf("::");
  if (dbl !== -1) {
    if (s.indexOf("::", dbl + 1) !== -1) return undefined;
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i] ?? "";
      if (i === pieces.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return undefined;
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  const h = groups(head);
  const t = groups(tail);
  if (!h || !t) return undefined;
  const missing = 8 - h.length - t.length;
  if (dbl === -1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...h, ...new Array<number>(dbl === -1 ? 0 : missing).fill(0), ...t];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Parses CIDRs (a bare address means a single host); throws on an invalid entry. */
export function parseCidrs(cidrs: readonly string[]): CidrSet {
  const ranges: Range[] = [];
  for (const c of cidrs) {
    const slash = c.indexOf("/");
    const addr = slash === -1 ? c : c.slice(0, slash);
    const bytes = parseIp(addr.trim());
    if (!bytes) throw new Error(`"${c}" is not an IP address or CIDR`);
    const max = bytes.length * 8;
    // An IPv4-mapped IPv6 CIDR (::ffff:10.0.0.0/104) is an IPv4 range.
    let prefix = slash === -1 ? max : Number(c.slice(slash + 1));
    if (slash !== -1 && bytes.length === 4 && addr.includes(":")) prefix -= 96;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`"${c}" has an invalid prefix length`);
    ranges.push({ bytes, prefix });
  }
  return { ranges };
}

/** True when `ip` (from parseIp) lies in one of the set's ranges. */
export function cidrContains(set: CidrSet, ip: Uint8Array): boolean {
  for (const r of set.ranges) {
    if (r.bytes.length !== ip.length) continue;
    let bits = r.prefix;
    let i = 0;
    let ok = true;
    while (bits >= 8) {
      if (r.bytes[i] !== ip[i]) {
        ok = false;
        break;
      }
      bits -= 8;
      i++;
    }
    if (ok && bits > 0) {
      const mask = (0xff << (8 - bits)) & 0xff;
      ok = ((r.bytes[i] ?? 0) & mask) === ((ip[i] ?? 0) & mask);
    }
    if (ok) return true;
  }
  return false;
}
