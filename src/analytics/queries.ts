// The views over the store, written once for every backend: top keys, one
// key's timeline, status codes, top endpoints (routes and raw paths),
// countries and source networks. Each takes the same filter: a time range,
// an allow-list of namespaces (the caller's RBAC scope), an owner, a label
// selector and a key (namespace/name or key id).
//
// Where the answer comes from: a range of whole UTC days is counted from the
// daily rollups; another range that starts within the per-request retention
// from per-request rows, to the millisecond; an older one from the rollups, by
// whole UTC days (the days the range touches). Raw
// paths, source networks and the hourly timeline exist only as per-request
// rows: their ranges are clipped to the retention window.
//
// On SQLite, every read of per-request rows in a time range names the segments
// whose span meets the range (segmentsMeeting): one key's rows are then found by
// segment, key and time (requests_seg_uid_at, ADR 62).
import { sql, SqliteAdapter, type ExpressionBuilder, type Kysely, type RawBuilder, type SelectQueryBuilder } from "kysely";
import { DAY_MS, HOUR_MS, type AnalyticsDB } from "./schema.ts";
import { parseSelector } from "./selector.ts";

export interface UsageFilter {
  /** ms since the epoch, inclusive. */
  since: number;
  /** ms since the epoch, exclusive. */
  until: number;
  /** Only keys in these namespaces (an allow-list: empty matches nothing); undefined: every namespace. */
  namespaces?: readonly string[];
  /** Only keys with this spec.owner. */
  owner?: string;
  /** Only keys whose labels match (k=v, k!=v, k, !k; comma-separated, all must hold). */
  selector?: string;
  /** One key: `namespace/name` (every ApiKey of that name, deleted ones too) or a key id. */
  key?: string;
}

export interface Counts {
  requests: number;
  allowed: number;
  /** Refused by keyward (any outcome but allowed). */
  denied: number;
  /** Requests whose client got a 4xx (keyward's or the upstream's). */
  status4xx: number;
  status5xx: number;
}

export interface KeyUsage extends Counts {
  uid: string;
  namespace: string;
  name: string;
  owner: string;
  /** When the ApiKey was deleted (ms), if it was. */
  deletedAt?: number;
}

export interface TimelinePoint extends Counts {
  /** Start of the hour or UTC day (ms). */
  at: number;
  /** Mean check latency (µs) of the bucket's requests. */
  checkMicrosAvg: number;
  /** Mean upstream latency (µs) of the requests the upstream answered, when any did. */
  upstreamMicrosAvg?: number;
  requestBytes: number;
  responseBytes: number;
  /** Requests keyward refused with 401 (no or unknown key), 403 (scope, route, source) and 429 (limits). */
  status401: number;
  status403: number;
  status429: number;
  /** Allowed requests by the class of the status the client got: the upstream's when the access log reported it, keyward's 200 otherwise. */
  upstream2xx: number;
  upstream3xx: number;
  upstream4xx: number;
  upstream5xx: number;
}

/** The timeline's per-status series, in TimelinePoint's field names. */
const REFUSED_STATUSES = [401, 403, 429] as const;
const ALLOWED_CLASSES = [2, 3, 4, 5] as const;

export interface StatusCount {
  status: number;
  requests: number;
}

export interface EndpointUsage extends Counts {
  /** `METHOD /pattern` (routes) or the raw path (paths); "" when no route matched. */
  endpoint: string;
  /** Mean check latency (µs). */
  checkMicrosAvg: number;
}

export interface CountryUsage {
  /** ISO 3166 alpha-2, `private`, or "" when unknown. */
  country: string;
  requests: number;
}

/** An ApiKey as the store knows it, with when it was last allowed a request. */
export interface KeyActivity {
  uid: string;
  namespace: string;
  name: string;
  owner: string;
  labels: Record<string, string>;
  scopes: string[];
  createdAt: number;
  expiresAt?: number;
  deletedAt?: number;
  /** Last allowed request (ms): to the millisecond within the per-request retention, the start of its UTC day before; undefined when none is on record. */
  lastUsedAt?: number;
}

/** Allowed requests of one key through one policy rule. */
export interface RuleUse {
  uid: string;
  /** `namespace/name` of the ApiKeyPolicy. */
  policy: string;
  rule: string;
  requests: number;
}

export interface NetworkUsage {
  network: string;
  requests: number;
  firstAt: number;
  lastAt: number;
}

/** A request keyward refused: what the console's denials list shows. */
export interface Denial {
  at: number;
  uid: string;
  namespace: string;
  name: string;
  keyId: string;
  method: string;
  path: string;
  /** The status keyward answered. */
  status: number;
  /** keyward's reason code (`scope_missing`, `rate_limited`, ...). */
  reason: string;
  sourceAddress: string;
  country: string;
}

/** One key version (key id) of a key as the store saw it. */
export interface VersionUse {
  keyId: string;
  /** The first UTC day with a request (ms). */
  firstSeenAt: number;
  /** Last allowed request (ms): to the millisecond within the per-request retention, the start of its UTC day before. */
  lastUsedAt?: number;
}

/** An alert the evaluator fired (src/alerts), firing or resolved. */
export interface AlertRecord {
  uid: string;
  alert: string;
  namespace: string;
  name: string;
  owner: string;
  state: "firing" | "resolved";
  /** When it last started firing (ms). */
  startsAt: number;
  /** When it resolved (ms), once it has. */
  endsAt?: number;
  summary: string;
}

type Source = "requests" | "rollups";
// The columns both tables share, under the alias t, with the key under k.
type Scope = AnalyticsDB & { t: AnalyticsDB["requests"] | AnalyticsDB["rollups"]; k: AnalyticsDB["keys"] };
type Q<O> = SelectQueryBuilder<Scope, "t" | "k", O>;

interface Measures {
  /** Each row's weight: 1 per request row, n per rollup row. */
  weight: RawBuilder<number>;
  /** The status the client got. */
  status: RawBuilder<number>;
  country: RawBuilder<string>;
  route: RawBuilder<string>;
}

const MEASURES: Record<Source, Measures> = {
  requests: {
    weight: sql<number>`1`,
    status: sql<number>`coalesce(t.upstream_status, t.status)`,
    country: sql<string>`coalesce(t.country, '')`,
    route: sql<string>`coalesce(t.route, '')`,
  },
  rollups: { weight: sql<number>`t.n`, status: sql<number>`t.status`, country: sql<string>`t.country`, route: sql<string>`t.route` },
};

/** True when `db` speaks SQLite: its per-request rows are in segments (schema.ts, ADR 62). */
export function hasSegments(db: Kysely<AnalyticsDB>): boolean {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

/**
 * SQLite: `alias`'s rows are in a segment whose span meets [since, until): what lets the planner
 * seek one key's rows by segment, key and time. Every row is in a segment whose span holds its
 * `at` (a span only widens), so the term leaves every answer as it was. Undefined on PostgreSQL.
 */
export function segmentsMeeting(db: Kysely<AnalyticsDB>, alias: string, since: number, until: number = Number.MAX_SAFE_INTEGER): RawBuilder<boolean> | undefined {
  if (!hasSegments(db)) return undefined;
  return sql<boolean>`${sql.ref(`${alias}.seg`)} in (select s.seg from request_segments s where s.last_at >= ${since} and s.first_at < ${until})`;
}

export function num(v: unknown): number {
  return v === null || v === undefined ? 0 : Number(v);
}

function parseScopes(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function counts(r: Record<string, unknown>): Counts {
  return { requests: num(r.requests), allowed: num(r.allowed), denied: num(r.requests) - num(r.allowed), status4xx: num(r.status4xx), status5xx: num(r.status5xx) };
}

export interface QueryOptions {
  /** The first ms per-request rows are kept for (now minus the retention, at a UTC day start). */
  requestsFrom: () => number;
  /** Rows a list returns at most, unless a query is given its own limit. */
  defaultLimit?: number;
}

export class AnalyticsQueries {
  readonly #db: Kysely<AnalyticsDB>;
  readonly #options: QueryOptions;

  constructor(db: Kysely<AnalyticsDB>, options: QueryOptions) {
    this.#db = db;
    this.#options = options;
  }

  /**
   * The daily rollups when the range is whole UTC days (the same answer, from far fewer rows) or
   * starts before the per-request retention; per-request rows otherwise.
   */
  #source(f: UsageFilter): Source {
    if (f.since % DAY_MS === 0 && f.until % DAY_MS === 0) return "rollups";
    return f.since >= this.#options.requestsFrom() ? "requests" : "rollups";
  }

  /** The filter's range, clipped to the per-request retention. */
  #recent(f: UsageFilter): UsageFilter {
    return { ...f, since: Math.max(f.since, this.#options.requestsFrom()) };
  }

  #from(src: Source, f: UsageFilter): Q<object> | undefined {
    if (f.namespaces?.length === 0 || f.until <= f.since) return undefined;
    const db = this.#db as unknown as Kysely<Scope>;
    let q = db.selectFrom(`${src} as t` as "t").innerJoin("keys as k", "k.uid", "t.uid") as Q<object>;
    if (src === "requests") {
      q = q.where(sql<boolean>`t.at >= ${f.since} and t.at < ${f.until}`);
      const segments = segmentsMeeting(this.#db, "t", f.since, f.until);
      if (segments) q = q.where(segments);
    } else q = q.where(sql<boolean>`t.day >= ${Math.floor(f.since / DAY_MS)} and t.day <= ${Math.floor((f.until - 1) / DAY_MS)}`);
    return this.#whereKey(q, f, (q2, id) => q2.where("t.key_id", "=", id));
  }

  /** The filter's terms on the key (k): namespaces, owner, key and selector; `byKeyId` narrows to a key id. */
  #whereKey<O>(query: Q<O>, f: UsageFilter, byKeyId: (q: Q<O>, id: string) => Q<O>): Q<O> {
    let q = query;
    if (f.namespaces) q = q.where("k.namespace", "in", [...f.namespaces]);
    if (f.owner !== undefined) q = q.where("k.owner", "=", f.owner);
    if (f.key !== undefined) {
      const slash = f.key.indexOf("/");
      q = slash === -1 ? byKeyId(q, f.key) : q.where("k.namespace", "=", f.key.slice(0, slash)).where("k.name", "=", f.key.slice(slash + 1));
    }
    for (const term of parseSelector(f.selector ?? "")) {
      q = q.where((eb) => {
        const label = eb.selectFrom("key_labels as l").select(sql`1`.as("one")).whereRef("l.uid", "=", "k.uid").where("l.name", "=", term.key);
        switch (term.op) {
          case "exists":
            return eb.exists(label);
          case "!exists":
            return eb.not(eb.exists(label));
          case "=":
            return eb.exists(label.where("l.value", "=", term.value));
          case "!=":
            // As Kubernetes: a key without the label matches k!=v.
            return eb.not(eb.exists(label.where("l.value", "=", term.value)));
        }
      });
    }
    return q;
  }

  #counts(src: Source) {
    const m = MEASURES[src];
    return (eb: ExpressionBuilder<Scope, "t" | "k">) => [
      eb.fn.sum<number>(m.weight).as("requests"),
      eb.fn.sum<number>(sql`case when t.outcome = 'allowed' then ${m.weight} else 0 end`).as("allowed"),
      eb.fn.sum<number>(sql`case when ${m.status} >= 400 and ${m.status} < 500 then ${m.weight} else 0 end`).as("status4xx"),
      eb.fn.sum<number>(sql`case when ${m.status} >= 500 then ${m.weight} else 0 end`).as("status5xx"),
    ];
  }

  /** Refusals by keyward's status, and allowed requests by the client's status class: what the console charts per bucket. */
  #statusSeries(src: Source) {
    const m = MEASURES[src];
    return (eb: ExpressionBuilder<Scope, "t" | "k">) => [
      ...REFUSED_STATUSES.map((code) => eb.fn.sum<number>(sql`case when t.outcome <> 'allowed' and ${m.status} = ${sql.lit(code)} then ${m.weight} else 0 end`).as(`status${code}`)),
      ...ALLOWED_CLASSES.map((c) => eb.fn.sum<number>(sql`case when t.outcome = 'allowed' and ${m.status} >= ${sql.lit(c * 100)} and ${m.status} < ${sql.lit(c * 100 + 100)} then ${m.weight} else 0 end`).as(`upstream${c}xx`)),
    ];
  }

  /** Keys by requests, most first. */
  async topKeys(f: UsageFilter, limit = this.#options.defaultLimit ?? 20): Promise<KeyUsage[]> {
    const src = this.#source(f);
    const q = this.#from(src, f);
    if (!q) return [];
    const rows = await q
      .select(["k.uid", "k.namespace", "k.name", "k.owner", "k.deleted_at"])
      .select(this.#counts(src))
      .groupBy(["k.uid", "k.namespace", "k.name", "k.owner", "k.deleted_at"])
      .orderBy("requests", "desc")
      .orderBy("k.namespace")
      .orderBy("k.name")
      .orderBy("k.uid")
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      uid: r.uid,
      namespace: r.namespace,
      name: r.name,
      owner: r.owner,
      ...(r.deleted_at !== null ? { deletedAt: num(r.deleted_at) } : {}),
      ...counts(r),
    }));
  }

  /** Requests per hour (per-request rows, within retention) or per UTC day (rollups), oldest first; empty buckets are left out. */
  async timeline(f: UsageFilter, step: "hour" | "day"): Promise<TimelinePoint[]> {
    const src: Source = step === "hour" ? "requests" : "rollups";
    const q = this.#from(src, step === "hour" ? this.#recent(f) : f);
    if (!q) return [];
    const bucket = step === "hour" ? sql<number>`(t.at / ${sql.lit(HOUR_MS)}) * ${sql.lit(HOUR_MS)}` : sql<number>`cast(t.day as bigint) * ${sql.lit(DAY_MS)}`;
    const upstream =
      src === "requests"
        ? { n: sql<number>`case when t.upstream_micros is null then 0 else 1 end`, micros: sql<number>`coalesce(t.upstream_micros, 0)`, check: sql<number>`t.check_micros`, req: sql<number>`coalesce(t.request_bytes, 0)`, resp: sql<number>`coalesce(t.response_bytes, 0)` }
        : { n: sql<number>`t.upstream_n`, micros: sql<number>`t.upstream_micros_sum`, check: sql<number>`t.check_micros_sum`, req: sql<number>`t.request_bytes`, resp: sql<number>`t.response_bytes` };
    const rows = await q
      .select(bucket.as("bucket"))
      .select(this.#counts(src))
      .select((eb) => [
        eb.fn.sum<number>(upstream.n).as("upstream_n"),
        eb.fn.sum<number>(upstream.micros).as("upstream_micros"),
        eb.fn.sum<number>(upstream.check).as("check_micros"),
        eb.fn.sum<number>(upstream.req).as("request_bytes"),
        eb.fn.sum<number>(upstream.resp).as("response_bytes"),
      ])
      .select(this.#statusSeries(src))
      .groupBy(bucket)
      .orderBy(bucket)
      .execute();
    return rows.map((r) => {
      const n = num(r.upstream_n);
      return {
        at: num(r.bucket),
        ...counts(r),
        checkMicrosAvg: num(r.requests) > 0 ? Math.round(num(r.check_micros) / num(r.requests)) : 0,
        ...(n > 0 ? { upstreamMicrosAvg: Math.round(num(r.upstream_micros) / n) } : {}),
        requestBytes: num(r.request_bytes),
        responseBytes: num(r.response_bytes),
        status401: num(r.status401),
        status403: num(r.status403),
        status429: num(r.status429),
        upstream2xx: num(r.upstream2xx),
        upstream3xx: num(r.upstream3xx),
        upstream4xx: num(r.upstream4xx),
        upstream5xx: num(r.upstream5xx),
      };
    });
  }

  /** Requests per status the client got, by status. */
  async statusCodes(f: UsageFilter): Promise<StatusCount[]> {
    const src = this.#source(f);
    const q = this.#from(src, f);
    if (!q) return [];
    const m = MEASURES[src];
    const rows = await q
      .select(m.status.as("status"))
      .select((eb) => eb.fn.sum<number>(m.weight).as("requests"))
      .groupBy(m.status)
      .orderBy(m.status)
      .execute();
    return rows.map((r) => ({ status: num(r.status), requests: num(r.requests) }));
  }

  /** Top routes (rollups beyond retention) or raw paths (per-request rows only, within retention), most requested first. */
  async endpoints(f: UsageFilter, by: "route" | "path", limit = this.#options.defaultLimit ?? 20): Promise<EndpointUsage[]> {
    const src = by === "path" ? "requests" : this.#source(f);
    const q = this.#from(src, by === "path" ? this.#recent(f) : f);
    if (!q) return [];
    const m = MEASURES[src];
    const endpoint = by === "path" ? sql<string>`coalesce(t.path, '')` : m.route;
    const micros = src === "requests" ? sql<number>`t.check_micros` : sql<number>`t.check_micros_sum`;
    const rows = await q
      .select(endpoint.as("endpoint"))
      .select(this.#counts(src))
      .select((eb) => eb.fn.sum<number>(micros).as("micros"))
      .groupBy(endpoint)
      .orderBy("requests", "desc")
      .orderBy(endpoint)
      .limit(limit)
      .execute();
    return rows.map((r) => ({ endpoint: r.endpoint, ...counts(r), checkMicrosAvg: num(r.requests) > 0 ? Math.round(num(r.micros) / num(r.requests)) : 0 }));
  }

  /** Requests per source country, most first. */
  async countries(f: UsageFilter, limit = this.#options.defaultLimit ?? 20): Promise<CountryUsage[]> {
    const src = this.#source(f);
    const q = this.#from(src, f);
    if (!q) return [];
    const m = MEASURES[src];
    const rows = await q
      .select(m.country.as("country"))
      .select((eb) => eb.fn.sum<number>(m.weight).as("requests"))
      .groupBy(m.country)
      .orderBy("requests", "desc")
      .orderBy(m.country)
      .limit(limit)
      .execute();
    return rows.map((r) => ({ country: r.country, requests: num(r.requests) }));
  }

  /** Source networks (per-request rows, within retention), most requests first, with when each was first and last seen. */
  async networks(f: UsageFilter, limit = this.#options.defaultLimit ?? 20): Promise<NetworkUsage[]> {
    const q = this.#from("requests", this.#recent(f));
    if (!q) return [];
    const rows = await q
      .where(sql<boolean>`t.network is not null`)
      .select(sql<string>`t.network`.as("network"))
      .select((eb) => [eb.fn.countAll<number>().as("requests"), eb.fn.min<number>(sql`t.at`).as("first_at"), eb.fn.max<number>(sql`t.at`).as("last_at")])
      .groupBy(sql`t.network`)
      .orderBy("requests", "desc")
      .orderBy(sql`t.network`)
      .limit(limit)
      .execute();
    return rows.map((r) => ({ network: r.network, requests: num(r.requests), firstAt: num(r.first_at), lastAt: num(r.last_at) }));
  }

  /** Requests keyward refused (per-request rows, within retention), newest first. */
  async denials(f: UsageFilter, limit = this.#options.defaultLimit ?? 20): Promise<Denial[]> {
    const q = this.#from("requests", this.#recent(f));
    if (!q) return [];
    const rows = await q
      .where(sql<boolean>`t.outcome <> 'allowed' and t.outcome <> 'cancelled'`)
      .select(["k.uid", "k.namespace", "k.name"])
      .select([
        sql<number>`t.at`.as("at"),
        sql<string>`t.key_id`.as("key_id"),
        sql<string>`coalesce(t.method, '')`.as("method"),
        sql<string>`coalesce(t.path, '')`.as("path"),
        sql<number>`t.status`.as("status"),
        sql<string>`t.reason`.as("reason"),
        sql<string>`coalesce(t.source, '')`.as("source"),
        sql<string>`coalesce(t.country, '')`.as("country"),
      ])
      .orderBy(sql`t.at`, "desc")
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      at: num(r.at),
      uid: r.uid,
      namespace: r.namespace,
      name: r.name,
      keyId: r.key_id,
      method: r.method,
      path: r.path,
      status: num(r.status),
      reason: r.reason,
      sourceAddress: r.source,
      country: r.country,
    }));
  }

  /** The key ids one ApiKey (by uid) was used with, oldest first, each with its last allowed request. */
  async keyVersions(uid: string): Promise<VersionUse[]> {
    const days = await this.#db
      .selectFrom("rollups")
      .where("uid", "=", uid)
      .select((eb) => ["key_id", eb.fn.min<number>("day").as("first"), eb.fn.max<number | null>(sql`case when outcome = 'allowed' then day end`).as("last")])
      .groupBy("key_id")
      .execute();
    const from = this.#options.requestsFrom();
    let recentQ = this.#db.selectFrom("requests as t").where("t.uid", "=", uid).where("t.outcome", "=", "allowed").where("t.at", ">=", from);
    const segments = segmentsMeeting(this.#db, "t", from);
    if (segments) recentQ = recentQ.where(segments);
    const recent = await recentQ.select((eb) => ["t.key_id", eb.fn.max<number>("t.at").as("last")]).groupBy("t.key_id").execute();
    const lastAt = new Map(recent.map((r) => [r.key_id, num(r.last)]));
    return days
      .map((r) => {
        const last = lastAt.get(r.key_id) ?? (r.last === null ? undefined : num(r.last) * DAY_MS);
        return { keyId: r.key_id, firstSeenAt: num(r.first) * DAY_MS, ...(last !== undefined ? { lastUsedAt: last } : {}) };
      })
      .sort((a, b) => a.firstSeenAt - b.firstSeenAt || a.keyId.localeCompare(b.keyId));
  }

  /** Alerts of the selected keys: the firing ones, and unless `firingOnly` those that started or resolved within the range; firing first, newest first. */
  async alertRecords(f: UsageFilter, firingOnly: boolean): Promise<AlertRecord[]> {
    if (f.namespaces?.length === 0) return [];
    const db = this.#db as unknown as Kysely<Scope & { a: AnalyticsDB["alert_state"] }>;
    const joined = db.selectFrom("alert_state as a").innerJoin("keys as k", "k.uid", "a.uid") as unknown as Q<object>;
    const q = this.#whereKey(joined, f, (q2, id) =>
      q2.where((eb) => eb.exists(eb.selectFrom("rollups as r").select(sql`1`.as("one")).whereRef("r.uid", "=", "k.uid").where("r.key_id", "=", id))),
    );
    const window = firingOnly ? sql<boolean>`a.firing = 1` : sql<boolean>`(a.firing = 1 or (a.fired_at >= ${f.since} and a.fired_at < ${f.until}) or (a.resolved_at >= ${f.since} and a.resolved_at < ${f.until}))`;
    const rows = await q
      .where(window)
      .select(["k.uid", "k.namespace", "k.name", "k.owner"])
      .select([sql<string>`a.alert`.as("alert"), sql<number>`a.firing`.as("firing"), sql<number>`a.fired_at`.as("fired_at"), sql<number | null>`a.resolved_at`.as("resolved_at"), sql<string>`a.message`.as("message")])
      .orderBy(sql`a.firing`, "desc")
      .orderBy(sql`a.fired_at`, "desc")
      .orderBy("k.namespace")
      .orderBy("k.name")
      .execute();
    return rows.map((r) => ({
      uid: r.uid,
      alert: r.alert,
      namespace: r.namespace,
      name: r.name,
      owner: r.owner,
      state: num(r.firing) === 1 ? "firing" : "resolved",
      startsAt: num(r.fired_at),
      ...(num(r.firing) !== 1 && r.resolved_at !== null ? { endsAt: num(r.resolved_at) } : {}),
      summary: r.message,
    }));
  }

  /** Every namespace the store holds an ApiKey of (deleted ones too), sorted. */
  async keyNamespaces(): Promise<string[]> {
    const rows = await this.#db.selectFrom("keys").select("namespace").distinct().orderBy("namespace").execute();
    return rows.map((r) => r.namespace);
  }

  /** The keys the filter's key terms select, deleted ones too. */
  #keys(f: Omit<UsageFilter, "since" | "until">) {
    const db = this.#db as unknown as Kysely<Scope>;
    return this.#whereKey(db.selectFrom("keys as k"), { since: 0, until: 0, ...f }, (q, id) =>
      q.where((eb) => eb.exists(eb.selectFrom("rollups as r").select(sql`1`.as("one")).whereRef("r.uid", "=", "k.uid").where("r.key_id", "=", id))),
    );
  }

  /**
   * Every key the filter's key terms select, deleted ones too, with its labels and scopes but
   * not its last use: the console's inventory, which reads last use from lastUses().
   */
  async keyRecords(f: Omit<UsageFilter, "since" | "until">): Promise<Omit<KeyActivity, "lastUsedAt">[]> {
    if (f.namespaces?.length === 0) return [];
    const keys = this.#keys(f);
    const rows = await keys.select(["k.uid", "k.namespace", "k.name", "k.owner", "k.scopes", "k.created_at", "k.expires_at", "k.deleted_at"]).orderBy("k.namespace").orderBy("k.name").orderBy("k.uid").execute();
    const labels = await keys.innerJoin("key_labels as l", "l.uid", "k.uid").select(["l.uid", "l.name", "l.value"]).execute();
    const byUid = new Map<string, Record<string, string>>();
    for (const l of labels) byUid.set(l.uid, { ...byUid.get(l.uid), [l.name]: l.value });
    return rows.map((r) => ({
      uid: r.uid,
      namespace: r.namespace,
      name: r.name,
      owner: r.owner,
      labels: byUid.get(r.uid) ?? {},
      scopes: parseScopes(r.scopes),
      createdAt: num(r.created_at),
      ...(r.expires_at !== null ? { expiresAt: num(r.expires_at) } : {}),
      ...(r.deleted_at !== null ? { deletedAt: num(r.deleted_at) } : {}),
    }));
  }

  /**
   * Every key's last allowed request by uid, in two scans without joins: the daily rollups (the
   * start of the UTC day) and the per-request rows of the retention (to the millisecond).
   */
  async lastUses(): Promise<Map<string, number>> {
    const days = await this.#db.selectFrom("rollups").where("outcome", "=", "allowed").select((eb) => ["uid", eb.fn.max<number>("day").as("last")]).groupBy("uid").execute();
    const recent = await this.#db
      .selectFrom("requests")
      .where("outcome", "=", "allowed")
      .where("at", ">=", this.#options.requestsFrom())
      .select((eb) => ["uid", eb.fn.max<number>("at").as("last")])
      .groupBy("uid")
      .execute();
    const last = new Map<string, number>();
    for (const r of days) last.set(r.uid, num(r.last) * DAY_MS);
    for (const r of recent) last.set(r.uid, Math.max(last.get(r.uid) ?? 0, num(r.last)));
    return last;
  }

  /** Every key the filter's key terms select (its time range is not used), deleted ones too, with its last allowed request. */
  async keyActivity(f: Omit<UsageFilter, "since" | "until">): Promise<KeyActivity[]> {
    if (f.namespaces?.length === 0) return [];
    const keys = this.#keys(f);
    const records = await this.keyRecords(f);
    const lastDay = await keys
      .innerJoin("rollups as r", "r.uid", "k.uid")
      .where("r.outcome", "=", "allowed")
      .select((eb) => ["k.uid", eb.fn.max<number>("r.day").as("last")])
      .groupBy("k.uid")
      .execute();
    const from = this.#options.requestsFrom();
    let lastAtQ = keys
      .innerJoin("requests as q", "q.uid", "k.uid")
      .where("q.outcome", "=", "allowed")
      .where(sql<boolean>`q.at >= ${from}`);
    const segments = segmentsMeeting(this.#db, "q", from);
    if (segments) lastAtQ = lastAtQ.where(segments);
    const lastAt = await lastAtQ.select((eb) => ["k.uid", eb.fn.max<number>("q.at").as("last")]).groupBy("k.uid").execute();
    const last = new Map<string, number>();
    for (const r of lastDay) last.set(r.uid, num(r.last) * DAY_MS);
    for (const r of lastAt) last.set(r.uid, Math.max(last.get(r.uid) ?? 0, num(r.last)));
    return records.map((r) => {
      const used = last.get(r.uid);
      return used !== undefined ? { ...r, lastUsedAt: used } : r;
    });
  }

  /** Allowed requests per key, policy and rule (per-request rows, within retention): which rules each key was let through. */
  async rulesUsed(f: UsageFilter): Promise<RuleUse[]> {
    const q = this.#from("requests", this.#recent(f));
    if (!q) return [];
    const rows = await q
      .where(sql<boolean>`t.outcome = 'allowed' and t.policy is not null and t.rule is not null`)
      .select(["k.uid", sql<string>`t.policy`.as("policy"), sql<string>`t.rule`.as("rule")])
      .select((eb) => eb.fn.countAll<number>().as("requests"))
      .groupBy(["k.uid", sql`t.policy`, sql`t.rule`])
      .orderBy("k.uid")
      .orderBy(sql`t.policy`)
      .orderBy(sql`t.rule`)
      .execute();
    return rows.map((r) => ({ uid: r.uid, policy: r.policy, rule: r.rule, requests: num(r.requests) }));
  }
}
