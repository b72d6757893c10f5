// The source's network and whether an address is private: a row keeps the
// client's /24 (IPv4) or /48 (IPv6), the unit "a new source network" alerts
// and the network views count by.
import { parseIp } from "../index/cidr.ts";

/** An address as 4 or 16 bytes (IPv4-mapped IPv6 as IPv4), or undefined. */
export const addressBytes = parseIp;

/** `a.b.c.0/24` or `x:y:z::/48` (RFC 5952 spelling) of an address; undefined when it is not one. */
export function networkOf(address: string | undefined): string | undefined {
  const ip = address === undefined ? undefined : parseIp(address);
  if (!ip) return undefined;
  if (ip.length === 4) return `${ip[0]}.${ip[1]}.${ip[2]}.0/24`;
  const groups = [0, 1, 2].map((g) => ((ip[2 * g] as number) << 8) | (ip[2 * g + 1] as number));
  while (groups.length > 0 && groups[groups.length - 1] === 0) groups.pop();
  return `${groups.map((g) => g.toString(16)).join(":")}::/48`;
}

/** Loopback, private (RFC 1918, shared 100.64/10), link-local and unique local (fc00::/7) addresses. */
export function isPrivate(ip: Uint8Array): boolean {
  const a = ip[0] as number;
  const b = ip[1] as number;
  if (ip.length === 4) {
    return a === 10 || a === 127 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && b >= 64 && b < 128);
  }
  if ((a & 0xfe) === 0xfc) return true; // fc00::/7
  if (a === 0xfe && (b & 0xc0) === 0x80) return true; // fe80::/10
  return ip.every((x, i) => x === (i === 15 ? 1 : 0)); // ::1
}
