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
import { readIp } from "../index/cidr.ts";
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
  private readonly options: UnknownKeyGuardOptions;
  private readonly mask4: number;
  /** Networks below the threshold. */
  private readonly counting: Table<Window>;
  /** Blocked networks and when their block ends. */
  private readonly blocked: Table<number>;
  /** When the last block ends: after it, no network is blocked. */
  private lastBlockEndsMs = 0;
  /** Networks blocked so far. */
  blocks = 0;

  constructor(options: UnknownKeyGuardOptions) {
    this.options = options;
    this.mask4 = options.ipv4Prefix === 0 ? 0 : (0xffffffff << (32 - options.ipv4Prefix)) >>> 0;
    this.counting = new Table(options.maxNetworks);
    this.blocked = new Table(options.maxNetworks);
  }

  /** Entries dropped because a table was full. */
  get evictions(): number {
    return this.counting.dropped + this.blocked.dropped;
  }

  get enabled(): boolean {
    return this.options.threshold > 0;
  }

  /** Networks being counted, and networks blocked (some of whose blocks may have ended). */
  get sizes(): { counting: number; blocked: number } {
    return { counting: this.counting.size, blocked: this.blocked.size };
  }

  /** The network a client address belongs to. */
  network(address: string | undefined): Network {
    if (address === undefined) return NO_ADDRESS;
    const b = IP;
    const n = readIp(address, b);
    if (n === 0) return NO_ADDRESS;
    if (n === 4) return ((((b[0] as number) << 24) | ((b[1] as number) << 16) | ((b[2] as number) << 8) | (b[3] as number)) & this.mask4) >>> 0;
    let bits = this.options.ipv6Prefix;
    let s = "6";
    for (let i = 0; bits > 0; i++, bits -= 16) {
      const v = ((b[2 * i] as number) << 8) | (b[2 * i + 1] as number);
      s += String.fromCharCode(bits >= 16 ? v : v & (0xffff << (16 - bits)) & 0xffff);
    }
    return s;
  }

  /** The decision for an unknown key in `req`: 401, or 429 while (or once) its network is blocked. */
  unknownKey(req: CheckInput, rule: CompiledRule): Decision {
    if (!this.enabled) return deny("unknown_key", undefined, rule);
    const now = this.options.now();
    const net = this.network(clientAddress(req.peerAddress, req.forwardedFor, this.options.xffTrustedHops));
    const until = this.blockedUntil(net, now);
    if (until !== 0) return throttled(rule, until, now);
    let w = this.counting.get(net);
    if (w === undefined) {
      w = { startMs: now, count: 0 };
      this.counting.set(net, w);
    } else if (now - w.startMs >= this.options.windowMs) {
      w.startMs = now;
      w.count = 0;
    }
    if (++w.count <= this.options.threshold) return deny("unknown_key", undefined, rule);
    this.counting.delete(net);
    return throttled(rule, this.block(net, now), now);
  }

  /**
   * With blockAll: the 429 for any key from a blocked network, before the key is looked
   * up; undefined otherwise. Reads the client address only while some network is blocked.
   */
  refuseBlocked(req: CheckInput, rule: CompiledRule): Decision | undefined {
    if (!this.options.blockAll || this.blocked.size === 0) return undefined;
    const now = this.options.now();
    if (now >= this.lastBlockEndsMs) {
      this.blocked.clear();
      return undefined;
    }
    const until = this.blockedUntil(this.network(clientAddress(req.peerAddress, req.forwardedFor, this.options.xffTrustedHops)), now);
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
    const until = now + this.options.cooldownMs;
    this.blocked.set(net, until);
    if (until > this.lastBlockEndsMs) this.lastBlockEndsMs = until;
    this.blocks++;
    return until;
  }
}

/** Scratch space for one client address (the check path is synchronous). */
const IP = new Uint8Array(16);

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
