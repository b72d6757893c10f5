// Brute-force defence: unknown keys are counted per source network (the client
// address as allowedSources reads it, masked to --unknown-key-ipv4-prefix or
// --unknown-key-ipv6-prefix). A network that presents more than `threshold`
// unknown keys within `window` is blocked for `cooldown`: its unknown keys get
// 429 `unknown_key_throttled` with Retry-After. Valid keys are looked up first
// and are not affected, unless `blockAll` refuses every key from a blocked
// network before the lookup.
//
// Only the unknown-key path does any work here (and, with blockAll, keyed checks
// while some network is blocked). Memory is bounded: at most `maxNetworks`
// networks are counted and at most `maxNetworks` are blocked. Each table is two
// generations of half that size: when the newer one fills up, the older one is
// dropped whole, so nothing is ever iterated or sorted. Blocks all last
// `cooldown`, so the older generation of blocks holds the ones closest to their end.
import type { Registry } from "prom-client";
import { Counter, Gauge } from "prom-client";
import { parseIp } from "../index/cidr.ts";
import type { LimitVerdict } from "../limits/limiter.ts";
import { clientAddress, deny, type CheckInput, type Decision } from "../check/decision.ts";
import type { CompiledRule } from "../policy/policy.ts";

export interface UnknownKeyGuardOptions {
  /** Unknown keys a network may present per window before it is blocked; 0 turns the defence off. */
  threshold: number;
  windowMs: number;
  cooldownMs: number;
  /** Prefix lengths that make a network of an IPv4 and of an IPv6 client address. */
  ipv4Prefix: number;
  ipv6Prefix: number;
  /** Networks counted, and networks blocked, at most (each). */
  maxNetworks: number;
  /** While a network is blocked, refuse every key it presents before looking it up. */
  blockAll: boolean;
  /** As for allowedSources (check.ts clientAddress). */
  xffTrustedHops: number;
  now: () => number;
}

/** A network's key: a number for IPv4, a string for IPv6 and for a missing or unparsable address. */
type Network = number | string;

/** Where every client whose address is missing or does not parse is counted: one network. */
const NO_ADDRESS = "?";

interface Window {
  startMs: number;
  count: number;
}

/** A map of at most about `max` networks in two generations; the older is dropped when the newer fills. */
class Table<V> {
  private cur = new Map<Network, V>();
  private prev = new Map<Network, V>();
  private readonly half: number;
  /** Entries dropped with an older generation. */
  dropped = 0;

  constructor(max: number) {
    this.half = Math.max(1, Math.floor(max / 2));
  }

  get size(): number {
    return this.cur.size + this.prev.size;
  }

  get(net: Network): V | undefined {
    const v = this.cur.get(net);
    if (v !== undefined || this.prev.size === 0) return v;
    const old = this.prev.get(net);
    if (old !== undefined) {
      // Still in use: it moves to the newer generation.
      this.prev.delete(net);
      this.set(net, old);
    }
    return old;
  }

  /** Adds `net`, which get() did not find. */
  set(net: Network, v: V): void {
    if (this.cur.size >= this.half) {
      this.dropped += this.prev.size;
      this.prev = this.cur;
      this.cur = new Map();
    }
    this.cur.set(net, v);
  }

  delete(net: Network): void {
    if (!this.cur.delete(net)) this.prev.delete(net);
  }

  clear(): void {
    this.cur = new Map();
    this.prev = new Map();
  }
}

export class UnknownKeyGuard {
  private readonly o: UnknownKeyGuardOptions;
  private readonly mask4: number;
  /** Networks below the threshold. */
  private readonly counting: Table<Window>;
  /** Blocked networks and when their block ends. */
  private readonly blocked: Table<number>;
  /** When the last block ends: after it, no network is blocked. */
  private lastBlockEndsMs = 0;
  /** Networks blocked so far. */
  blocks = 0;

  constructor(o: UnknownKeyGuardOptions) {
    this.o = o;
    this.mask4 = o.ipv4Prefix === 0 ? 0 : (0xffffffff << (32 - o.ipv4Prefix)) >>> 0;
    this.counting = new Table(o.maxNetworks);
    this.blocked = new Table(o.maxNetworks);
  }

  /** Entries dropped because a table was full. */
  get evictions(): number {
    return this.counting.dropped + this.blocked.dropped;
  }

  get enabled(): boolean {
    return this.o.threshold > 0;
  }

  /** Networks being counted, and networks blocked (some of whose blocks may have ended). */
  get sizes(): { counting: number; blocked: number } {
    return { counting: this.counting.size, blocked: this.blocked.size };
  }

  /** The network a client address belongs to. */
  network(address: string | undefined): Network {
    if (address === undefined) return NO_ADDRESS;
    const v4 = ipv4Number(address);
    if (v4 !== -1) return (v4 & this.mask4) >>> 0;
    const g = GROUPS;
    if (!ipv6Groups(address, g)) {
      // Brackets, zones, embedded IPv4 and anything invalid.
      const ip = parseIp(address);
      if (!ip) return NO_ADDRESS;
      if (ip.length === 4) return ((((ip[0] as number) << 24) | ((ip[1] as number) << 16) | ((ip[2] as number) << 8) | (ip[3] as number)) & this.mask4) >>> 0;
      for (let i = 0; i < 8; i++) g[i] = ((ip[2 * i] as number) << 8) | (ip[2 * i + 1] as number);
    } else if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
      // IPv4-mapped, written in hex.
      return ((((g[6] as number) << 16) | (g[7] as number)) & this.mask4) >>> 0;
    }
    let bits = this.o.ipv6Prefix;
    let s = "6";
    for (let i = 0; bits > 0; i++, bits -= 16) {
      const v = g[i] as number;
      s += String.fromCharCode(bits >= 16 ? v : v & (0xffff << (16 - bits)) & 0xffff);
    }
    return s;
  }

  /** The decision for an unknown key in `req`: 401, or 429 while (or once) its network is blocked. */
  unknownKey(req: CheckInput, rule: CompiledRule): Decision {
    if (!this.enabled) return deny("unknown_key", undefined, rule);
    const now = this.o.now();
    const net = this.network(clientAddress(req.peerAddress, req.forwardedFor, this.o.xffTrustedHops));
    const until = this.blockedUntil(net, now);
    if (until !== 0) return throttled(rule, until, now);
    let w = this.counting.get(net);
    if (w === undefined) {
      w = { startMs: now, count: 0 };
      this.counting.set(net, w);
    } else if (now - w.startMs >= this.o.windowMs) {
      w.startMs = now;
      w.count = 0;
    }
    if (++w.count <= this.o.threshold) return deny("unknown_key", undefined, rule);
    this.counting.delete(net);
    return throttled(rule, this.block(net, now), now);
  }

  /**
   * With blockAll: the 429 for any key from a blocked network, before the key is looked
   * up; undefined otherwise. Reads the client address only while some network is blocked.
   */
  refuseBlocked(req: CheckInput, rule: CompiledRule): Decision | undefined {
    if (!this.o.blockAll || this.blocked.size === 0) return undefined;
    const now = this.o.now();
    if (now >= this.lastBlockEndsMs) {
      this.blocked.clear();
      return undefined;
    }
    const until = this.blockedUntil(this.network(clientAddress(req.peerAddress, req.forwardedFor, this.o.xffTrustedHops)), now);
    return until === 0 ? undefined : throttled(rule, until, now);
  }

  /** When `net`'s block ends, or 0 when it is not blocked. */
  private blockedUntil(net: Network, now: number): number {
    const until = this.blocked.get(net);
    if (until === undefined) return 0;
    if (until > now) return until;
    this.blocked.delete(net);
    return 0;
  }

  private block(net: Network, now: number): number {
    if (now >= this.lastBlockEndsMs) this.blocked.clear();
    const until = now + this.o.cooldownMs;
    this.blocked.set(net, until);
    if (until > this.lastBlockEndsMs) this.lastBlockEndsMs = until;
    this.blocks++;
    return until;
  }
}

/** Scratch space for the groups of one IPv6 address (the check path is synchronous). */
const GROUPS = new Uint16Array(8);

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * Reads an IPv6 address written in hex groups (with at most one `::`) into `out`;
 * false for any other form, left to parseIp.
 */
function ipv6Groups(s: string, out: Uint16Array): boolean {
  const len = s.length;
  let i = 0;
  let count = 0;
  let gap = -1;
  if (len >= 2 && s.charCodeAt(0) === 58 && s.charCodeAt(1) === 58) {
    gap = 0;
    i = 2;
  }
  while (i < len) {
    let v = 0;
    let digits = 0;
    for (let h = i < len ? hexValue(s.charCodeAt(i)) : -1; h !== -1 && digits <= 4; h = i < len ? hexValue(s.charCodeAt(i)) : -1) {
      v = v * 16 + h;
      digits++;
      i++;
    }
    if (digits === 0 || digits > 4 || count === 8) return false;
    out[count++] = v;
    if (i === len) break;
    if (s.charCodeAt(i) !== 58 /* : */) return false;
    i++;
    if (i < len && s.charCodeAt(i) === 58) {
      if (gap !== -1) return false;
      gap = count;
      i++;
    } else if (i === len) return false;
  }
  if (gap === -1) return count === 8;
  if (count === 8) return false;
  // Move the groups after `::` to the end and zero the ones it stands for.
  const after = count - gap;
  for (let k = 1; k <= after; k++) out[8 - k] = out[count - k] as number;
  out.fill(0, gap, 8 - after);
  return true;
}

/** A dotted-quad IPv4 address as a number, or -1 for anything else (parseIp reads those). */
function ipv4Number(s: string): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === 46 /* . */ && digits > 0 && ++dots <= 3) {
      v = v * 256 + part;
      part = 0;
      digits = 0;
    } else return -1;
  }
  return dots === 3 && digits > 0 ? v * 256 + part : -1;
}

function throttled(rule: CompiledRule, until: number, now: number): Decision {
  const seconds = Math.max(1, Math.ceil((until - now) / 1000));
  const verdict: LimitVerdict = { ok: false, reason: undefined, limit: undefined, remaining: 0, resetSeconds: seconds, retryAfterSeconds: seconds };
  return deny("unknown_key_throttled", undefined, rule, verdict);
}

/** The guard's counters and table sizes; per process, summed across --authz-workers. */
export function registerUnknownKeyMetrics(registry: Registry, guard: UnknownKeyGuard): void {
  new Counter({
    name: "keyward_authz_unknown_key_blocks_total",
    help: "Source networks blocked for presenting more unknown keys than --unknown-key-threshold within --unknown-key-window.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(guard.blocks);
    },
  });
  new Counter({
    name: "keyward_authz_unknown_key_evictions_total",
    help: "Source networks dropped from the unknown-key tables because they were full (--unknown-key-max-networks): many networks are presenting unknown keys.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(guard.evictions);
    },
  });
  new Gauge({
    name: "keyward_authz_unknown_key_networks",
    help: "Source networks in the unknown-key tables, by state (counting: below the threshold; blocked).",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const { counting, blocked } = guard.sizes;
      this.set({ state: "counting" }, counting);
      this.set({ state: "blocked" }, blocked);
    },
  });
}
