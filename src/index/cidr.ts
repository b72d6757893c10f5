// CIDR sets for ApiKey.spec.allowedSources: IPv4 and IPv6, parsed once when the
// key is indexed; a request's source address is parsed once and tested against
// each range with byte comparisons.
//
// Only one spelling of an address is accepted, with no room for two parsers to
// read it differently: IPv4 as four decimal fields without leading zeros
// ("010.0.0.1" is octal to some parsers and decimal to others, so it is refused),
// IPv6 as RFC 4291 text, no zone ("%eth0": the same address on different links),
// no surrounding whitespace. An IPv4-mapped IPv6 source address (::ffff:a.b.c.d,
// what a dual-stack listener reports for an IPv4 client) is the IPv4 address; as
// an allowedSources entry it is refused, as the CRD refuses it.
import { KeywardError } from "../errors.ts";

interface Range {
  bytes: Uint8Array; // 4 or 16
  prefix: number;
}

export interface CidrSet {
  readonly ranges: readonly Range[];
}

const DOT = 0x2e;
const COLON = 0x3a;
const ZERO = 0x30;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Parses an IP address into 4 (IPv4, including IPv4-mapped IPv6) or 16 bytes;
 * undefined if it is not one in the one accepted spelling (see above). An IPv6
 * address may stand in brackets ([2001:db8::1]).
 */
export function parseIp(text: string): Uint8Array | undefined {
  const n = readIp(text, SCRATCH);
  if (n === 0) return undefined;
  // A loop copies 4 or 16 bytes faster than slice().
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = SCRATCH[i] as number;
  return out;
}

/** parseIp's working space (parsing is synchronous). */
const SCRATCH = new Uint8Array(16);

/**
 * parseIp without allocating: writes the address into out[0, 4) or out[0, 16) (`out`
 * holds 16 bytes) and returns 4 or 16, or 0 when `text` is not an address.
 */
export function readIp(text: string, out: Uint8Array): 0 | 4 | 16 {
  let start = 0;
  let end = text.length;
  const bracketed = end > 2 && text.charCodeAt(0) === OPEN_BRACKET && text.charCodeAt(end - 1) === CLOSE_BRACKET;
  if (bracketed) {
    start = 1;
    end--;
  }
  const colon = text.indexOf(":", start);
  if (colon === -1 || colon >= end) {
    if (bracketed) return 0;
    return readIpv4(text, start, end, out, 0) ? 4 : 0;
  }
  if (!readIpv6(text, start, end, out)) return 0;
  if (!isV4Mapped(out)) return 16;
  out.copyWithin(0, 12, 16);
  return 4;
}

/** Reads text[start, end) as a dotted quad into out[at, at + 4); false unless it is exactly one. */
function readIpv4(text: string, start: number, end: number, out: Uint8Array, at: number): boolean {
  let i = start;
  for (let field = 0; field < 4; field++) {
    if (field > 0) {
      if (i >= end || text.charCodeAt(i) !== DOT) return false;
      i++;
    }
    const first = i;
    let n = 0;
    while (i < end && i - first < 4) {
      const d = text.charCodeAt(i) - ZERO;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 3 || n > 255 || (digits > 1 && text.charCodeAt(first) === ZERO)) return false;
    out[at + field] = n;
  }
  return i === end;
}

function hexDigit(c: number): number {
  if (c >= ZERO && c <= ZERO + 9) return c - ZERO;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
}

/** Reads text[start, end) as an IPv6 address (groups of 1-4 hex digits, at most one "::", a dotted quad last) into out[0, 16). */
function readIpv6(text: string, start: number, end: number, out: Uint8Array): boolean {
  let at = 0; // bytes written
  let gap = -1; // where "::" stands, in bytes
  let i = start;
  if (text.charCodeAt(i) === COLON) {
    if (text.charCodeAt(i + 1) !== COLON || i + 1 >= end) return false;
    gap = 0;
    i += 2;
  }
  while (i < end) {
    if (at === 16) return false;
    const first = i;
    let group = 0;
    while (i < end && i - first < 5) {
      const h = hexDigit(text.charCodeAt(i));
      if (h < 0) break;
      group = (group << 4) | h;
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 4) return false;
    if (i < end && text.charCodeAt(i) === DOT) {
      if (at > 12 || !readIpv4(text, first, end, out, at)) return false;
      at += 4;
      break;
    }
    out[at++] = group >> 8;
    out[at++] = group & 0xff;
    if (i === end) break;
    if (text.charCodeAt(i) !== COLON) return false;
    i++;
    if (i < end && text.charCodeAt(i) === COLON) {
      if (gap !== -1) return false;
      gap = at;
      i++;
    } else if (i === end) {
      return false; // a single trailing colon
    }
  }
  if (gap === -1) return at === 16;
  if (at === 16) return false; // "::" stands for at least one group
  const tail = at - gap;
  out.copyWithin(16 - tail, gap, at);
  out.fill(0, gap, 16 - tail);
  return true;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** A prefix length: decimal digits, no leading zero, at most `max`; undefined otherwise. */
function readPrefix(text: string, start: number, max: number): number | undefined {
  const digits = text.length - start;
  if (digits < 1 || digits > 3 || (digits > 1 && text.charCodeAt(start) === ZERO)) return undefined;
  let n = 0;
  for (let i = start; i < text.length; i++) {
    const d = text.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return n <= max ? n : undefined;
}

function parseCidr(entry: string): Range {
  const slash = entry.indexOf("/");
  const addr = slash === -1 ? entry : entry.slice(0, slash);
  const bytes = addr.charCodeAt(0) === OPEN_BRACKET ? undefined : parseIp(addr);
  if (!bytes) throw new KeywardError("ManifestInvalid", `"${entry}" is not an IP address or CIDR`);
  if (bytes.length === 4 && addr.includes(":")) {
    throw new KeywardError("ManifestInvalid", `"${entry}" is an IPv4-mapped IPv6 network; write it as IPv4`);
  }
  const max = bytes.length * 8;
  const prefix = slash === -1 ? max : readPrefix(entry, slash + 1, max);
  if (prefix === undefined) throw new KeywardError("ManifestInvalid", `"${entry}" has an invalid prefix length`);
  return { bytes, prefix };
}

/** Parses allowedSources entries (a bare address means a single host); throws on an invalid entry. */
export function parseCidrs(cidrs: readonly string[]): CidrSet {
  return { ranges: cidrs.map(parseCidr) };
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
