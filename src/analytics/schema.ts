// The analytics store's tables, as Kysely types and as versioned migrations.
//
// keys        one row per ApiKey ever seen (by uid), kept after deletion (deleted_at).
// key_labels  the ApiKey's labels, one row per label: views filter by selector with EXISTS.
// requests    one row per RequestRow; on PostgreSQL range-partitioned by day on `at`. On SQLite
//             each row also has its segment (`seg`): the writer fills segments of about
//             SEGMENT_ROWS rows in turn, and one key's rows are found by segment, key and time.
// request_segments (SQLite) one row per segment: the time span of its rows, so a time range
//             names the few segments it must look in (ADR 62).
// rollups     one row per day × key × route × status × country × outcome, added to at write time.
// alert_state one row per key × alert the evaluator has ever fired (src/alerts, ADR 45): whether it
//             fires now and when it last started, so the cooldown outlives restarts and leaders.
//
// Migrations are applied at start, in order, each in its own transaction, under a
// lock every replica takes first (see Backend.withSchemaLock), and recorded in
// keyward_schema: a replica that finds them applied does nothing.
import { sql, type ColumnType, type Kysely } from "kysely";
import type { RequestRow } from "./row.ts";

export { DAY_MS, HOUR_MS } from "./days.ts";

export interface KeysTable {
  uid: string;
  namespace: string;
  name: string;
  owner: string;
  /** JSON array of the scopes granted. */
  scopes: string;
  created_at: number;
  expires_at: number | null;
  deleted_at: number | null;
  /** When this record last changed (ms): a record written again as it was leaves it. */
  updated_at: number;
}

export interface KeyLabelsTable {
  uid: string;
  name: string;
  value: string;
}

type Nullable<T> = { [K in keyof T]-?: undefined extends T[K] ? Exclude<T[K], undefined> | null : T[K] };

/** Snake-case column names of RequestRow's fields. */
type Snake<S extends string> = S extends `${infer H}${infer T}` ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${Snake<T>}` : S;

export type RequestsTable = { [K in keyof RequestRow as Snake<K & string>]: Nullable<RequestRow>[K] } & {
  /** SQLite only: the row's segment (0: rows stored before segments). */
  seg?: ColumnType<number, number | undefined, never>;
};

/** SQLite only: one segment of per-request rows (ADR 62). */
export interface RequestSegmentsTable {
  seg: number;
  /** The earliest and latest `at` of the rows written into it (ms); retention's deletes leave them as they were. */
  first_at: number;
  last_at: number;
  /** Rows written into it. */
  n: number;
}

export interface RollupsTable {
  /** Days since the epoch (UTC). */
  day: number;
  uid: string;
  key_id: string;
  /** The matched route, or "" when none matched. */
  route: string;
  /** The status the client got: the upstream's when it answered, keyward's otherwise. */
  status: number;
  /** ISO country, `private`, or "" when unknown. */
  country: string;
  outcome: string;
  n: number;
  check_micros_sum: number;
  check_micros_max: number;
  /** Requests the upstream answered (those with upstream latency and bytes). */
  upstream_n: number;
  upstream_micros_sum: number;
  upstream_micros_max: number;
  request_bytes: number;
  response_bytes: number;
}

export interface AlertStateTable {
  uid: string;
  alert: string;
  /** 1 while the alert fires, 0 once resolved. */
  firing: number;
  /** When it last started firing (ms): the cooldown counts from here. */
  fired_at: number;
  /** When it last resolved (ms), if it has. */
  resolved_at: number | null;
  namespace: string;
  name: string;
  owner: string;
  message: string;
}

export interface SchemaTable {
  version: number;
  applied_at: ColumnType<number, number, never>;
}

export interface AnalyticsDB {
  keys: KeysTable;
  key_labels: KeyLabelsTable;
  requests: RequestsTable;
  rollups: RollupsTable;
  alert_state: AlertStateTable;
  request_segments: RequestSegmentsTable;
  keyward_schema: SchemaTable;
}

type ColumnKind = "bigint" | "integer" | "text";

/**
 * Every RequestRow field and its column, in one table: the DDL and the writer both read it, so a
 * field added to RequestRow is one line here (the type check fails until it is added).
 */
export const REQUEST_COLUMNS: { readonly [K in keyof RequestRow]-?: { column: Snake<K>; kind: ColumnKind; required: boolean } } = {
  at: { column: "at", kind: "bigint", required: true },
  requestId: { column: "request_id", kind: "text", required: false },
  uid: { column: "uid", kind: "text", required: true },
  keyId: { column: "key_id", kind: "text", required: true },
  front: { column: "front", kind: "text", required: true },
  policy: { column: "policy", kind: "text", required: false },
  rule: { column: "rule", kind: "text", required: false },
  route: { column: "route", kind: "text", required: false },
  method: { column: "method", kind: "text", required: false },
  host: { column: "host", kind: "text", required: false },
  path: { column: "path", kind: "text", required: false },
  outcome: { column: "outcome", kind: "text", required: true },
  reason: { column: "reason", kind: "text", required: true },
  status: { column: "status", kind: "integer", required: true },
  source: { column: "source", kind: "text", required: false },
  network: { column: "network", kind: "text", required: false },
  country: { column: "country", kind: "text", required: false },
  checkMicros: { column: "check_micros", kind: "integer", required: true },
  upstreamStatus: { column: "upstream_status", kind: "integer", required: false },
  upstreamMicros: { column: "upstream_micros", kind: "integer", required: false },
  requestBytes: { column: "request_bytes", kind: "bigint", required: false },
  responseBytes: { column: "response_bytes", kind: "bigint", required: false },
};

export type BackendKind = "sqlite" | "postgres";

export interface Migration {
  version: number;
  what: string;
  up(db: Kysely<AnalyticsDB>, kind: BackendKind): Promise<void>;
}

// Migrations build tables whose types they do not know yet.
type AnyDB = Kysely<Record<string, Record<string, unknown>>>;

async function createTables(kdb: Kysely<AnalyticsDB>, kind: BackendKind): Promise<void> {
  const db = kdb as unknown as AnyDB;
  await db.schema
    .createTable("keys")
    .addColumn("uid", "text", (c) => c.primaryKey())
    .addColumn("namespace", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("owner", "text", (c) => c.notNull())
    .addColumn("scopes", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint")
    .addColumn("deleted_at", "bigint")
    .addColumn("updated_at", "bigint", (c) => c.notNull())
    .execute();
  // Filters by namespace/name and owner.
  await db.schema.createIndex("keys_namespace_name").on("keys").columns(["namespace", "name"]).execute();
  await db.schema
    .createTable("key_labels")
    .addColumn("uid", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("value", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("key_labels_pk", ["uid", "name"])
    .execute();

  let requests = db.schema.createTable("requests");
  for (const { column, kind: k, required } of Object.values(REQUEST_COLUMNS)) {
    requests = requests.addColumn(column, k, (c) => (required ? c.notNull() : c));
  }
  // PostgreSQL: one partition per UTC day, created ahead and dropped whole by retention.
  if (kind === "postgres") requests = requests.modifyEnd(sql`partition by range (at)`);
  await requests.execute();
  // One key's rows by time: the timeline, the key filter, new-network checks.
  await db.schema.createIndex("requests_uid_at").on("requests").columns(["uid", "at"]).execute();
  // SQLite: time ranges and retention's range deletes (PostgreSQL prunes partitions instead).
  if (kind === "sqlite") await db.schema.createIndex("requests_at").on("requests").column("at").execute();

  await db.schema
    .createTable("rollups")
    .addColumn("day", "integer", (c) => c.notNull())
    .addColumn("uid", "text", (c) => c.notNull())
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("route", "text", (c) => c.notNull())
    .addColumn("status", "integer", (c) => c.notNull())
    .addColumn("country", "text", (c) => c.notNull())
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("n", "bigint", (c) => c.notNull())
    .addColumn("check_micros_sum", "bigint", (c) => c.notNull())
    .addColumn("check_micros_max", "bigint", (c) => c.notNull())
    .addColumn("upstream_n", "bigint", (c) => c.notNull())
    .addColumn("upstream_micros_sum", "bigint", (c) => c.notNull())
    .addColumn("upstream_micros_max", "bigint", (c) => c.notNull())
    .addColumn("request_bytes", "bigint", (c) => c.notNull())
    .addColumn("response_bytes", "bigint", (c) => c.notNull())
    // The conflict target of the additive upsert; day first also serves time ranges and retention.
    .addPrimaryKeyConstraint("rollups_pk", ["day", "uid", "key_id", "route", "status", "country", "outcome"])
    .execute();
}

async function createAlertState(kdb: Kysely<AnalyticsDB>): Promise<void> {
  await (kdb as unknown as AnyDB).schema
    .createTable("alert_state")
    .addColumn("uid", "text", (c) => c.notNull())
    .addColumn("alert", "text", (c) => c.notNull())
    .addColumn("firing", "integer", (c) => c.notNull())
    .addColumn("fired_at", "bigint", (c) => c.notNull())
    .addColumn("resolved_at", "bigint")
    .addColumn("namespace", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("owner", "text", (c) => c.notNull())
    .addColumn("message", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("alert_state_pk", ["uid", "alert"])
    .execute();
}

/**
 * One key's rollups by uid and day: its version history, daily timeline and last use (the key
 * page) read them by uid, which the primary key (day first) cannot serve without a scan.
 */
async function indexRollupsByUid(kdb: Kysely<AnalyticsDB>): Promise<void> {
  await (kdb as unknown as AnyDB).schema.createIndex("rollups_uid_day").ifNotExists().on("rollups").columns(["uid", "day"]).execute();
}

/**
 * Rows a SQLite segment holds before the writer starts the next (a batch is never split). The
 * segment's part of requests_seg_uid_at is what a batch's inserts dirty: a few hundred pages
 * whatever the table's size, where requests_uid_at's entries fell on about one page per row.
 */
export const SEGMENT_ROWS = 8192;

/**
 * SQLite: one key's per-request rows by segment, key and time (requests_seg_uid_at) instead of
 * by key and time (requests_uid_at), whose inserts, in the order of the keys' requests, dirtied
 * about one B-tree page each (ADR 62). The rows already stored are segment 0 (the column's
 * default: no row is rewritten), its span their earliest and latest times; the index over them is
 * built in one sorted pass. PostgreSQL keeps requests_uid_at (one per day partition).
 */
async function segmentRequests(kdb: Kysely<AnalyticsDB>, kind: BackendKind): Promise<void> {
  if (kind !== "sqlite") return;
  const db = kdb as unknown as AnyDB;
  await db.schema.alterTable("requests").addColumn("seg", "integer", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema
    .createTable("request_segments")
    .addColumn("seg", "integer", (c) => c.primaryKey())
    .addColumn("first_at", "bigint", (c) => c.notNull())
    .addColumn("last_at", "bigint", (c) => c.notNull())
    .addColumn("n", "bigint", (c) => c.notNull())
    .execute();
  await sql`insert into request_segments (seg, first_at, last_at, n) select 0, min(at), max(at), count(*) from requests having count(*) > 0`.execute(kdb);
  await db.schema.createIndex("requests_seg_uid_at").on("requests").columns(["seg", "uid", "at"]).execute();
  await db.schema.dropIndex("requests_uid_at").execute();
  await describeSegmentIndex(kdb);
}

/**
 * Tells SQLite's planner, in sqlite_stat1 (which keyward's stores have no other use for: it never
 * runs ANALYZE), what requests_seg_uid_at holds: SEGMENT_ROWS rows per segment, a few per key in
 * one. Without it the planner takes a segment alone for a handful of rows and reads every key's
 * rows of the range's segments where it should go by key; with it, it goes by key when the
 * filter names keys (a key, an owner, namespaces) and by time otherwise, as it did with
 * requests_uid_at (segments.test.ts checks the plans). `analyze sqlite_schema` makes the table and
 * reloads it: it reads nothing else.
 */
async function describeSegmentIndex(db: Kysely<AnalyticsDB>): Promise<void> {
  await sql`analyze sqlite_schema`.execute(db);
  await sql`delete from sqlite_stat1 where tbl = 'requests' and idx in ('requests_uid_at', 'requests_seg_uid_at')`.execute(db);
  await sql`insert into sqlite_stat1 (tbl, idx, stat) values ('requests', 'requests_seg_uid_at', ${`${SEGMENT_ROWS * 1000} ${SEGMENT_ROWS} 8 1`})`.execute(db);
  await sql`analyze sqlite_schema`.execute(db);
}

/** The schema's history. Append; never edit an applied migration. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, what: "keys, key_labels, requests, rollups", up: createTables },
  { version: 2, what: "alert_state", up: createAlertState },
  { version: 3, what: "rollups_uid_day", up: indexRollupsByUid },
  { version: 4, what: "requests_seg_uid_at (SQLite)", up: segmentRequests },
];

/** The schema version table, created when missing (every replica may try at once: callers hold the schema lock). */
export async function ensureSchemaTable(db: Kysely<AnalyticsDB>): Promise<void> {
  await (db as unknown as AnyDB).schema
    .createTable("keyward_schema")
    .ifNotExists()
    .addColumn("version", "integer", (c) => c.primaryKey())
    .addColumn("applied_at", "bigint", (c) => c.notNull())
    .execute();
}

/** Applies the migrations not yet recorded, each in a transaction; returns the versions applied. Call with the schema lock held. */
export async function applyMigrations(db: Kysely<AnalyticsDB>, kind: BackendKind, now: () => number, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  await ensureSchemaTable(db);
  const done = new Set((await db.selectFrom("keyward_schema").select("version").execute()).map((r) => r.version));
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(m.version)) continue;
    await db.transaction().execute(async (trx) => {
      await m.up(trx, kind);
      await trx.insertInto("keyward_schema").values({ version: m.version, applied_at: now() }).execute();
    });
    applied.push(m.version);
  }
  return applied;
}
