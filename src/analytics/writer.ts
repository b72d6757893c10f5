// Writes batches into the store: per-request rows, the daily rollups they add
// to, and the ApiKeys they belong to. A batch is one transaction: its rows and
// its rollup increments are written together or not at all, so a batch retried
// after a failure is never counted twice. Rollups are added to with
// INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n, so replicas writing
// the same day, key and route at once all count; rows are sorted by the
// conflict key first, so two replicas' batches lock rollups in the same order
// and cannot deadlock. On SQLite, a batch's rows go into the newest segment
// (schema.ts, ADR 62), whose time span the batch's own statement widens.
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { CompiledQuery, sql, type Insertable, type QueryResult, type Transaction } from "kysely";
import type { Backend } from "./backend.ts";
import type { KeyRecord, RequestRow } from "./row.ts";
import { DAY_MS, REQUEST_COLUMNS, SEGMENT_ROWS, type AnalyticsDB, type KeyLabelsTable, type KeysTable, type RequestsTable, type RollupsTable } from "./schema.ts";

const ROLLUP_KEY = ["day", "uid", "key_id", "route", "status", "country", "outcome"] as const;

/**
 * Statements of `n` rows, then the rest in statements of descending powers of two (64, 32, ...,
 * 1): a batch's statements come in a few sizes only, so their compiled SQL and prepared
 * statements are reused from one batch to the next instead of made anew for each remainder.
 */
export function statementChunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  let i = 0;
  for (; i + n <= xs.length; i += n) out.push(xs.slice(i, i + n));
  for (let size = 2 ** Math.floor(Math.log2(Math.max(1, n - 1))); size >= 1; size /= 2) {
    if (i + size <= xs.length) {
      out.push(xs.slice(i, i + size));
      i += size;
    }
  }
  return out;
}

const REQUEST_FIELDS = Object.keys(REQUEST_COLUMNS) as (keyof RequestRow)[];
const REQUEST_TEMPLATE = Object.fromEntries(Object.values(REQUEST_COLUMNS).map(({ column }) => [column, 0])) as unknown as Insertable<RequestsTable>;
/** SQLite's rows: the segment last, after every RequestRow column. */
const SEGMENT_TEMPLATE: Insertable<RequestsTable> = { ...REQUEST_TEMPLATE, seg: 0 };
const ROLLUP_TEMPLATE: RollupsTable = { day: 0, uid: "", key_id: "", route: "", status: 0, country: "", outcome: "", n: 0, check_micros_sum: 0, check_micros_max: 0, upstream_n: 0, upstream_micros_sum: 0, upstream_micros_max: 0, request_bytes: 0, response_bytes: 0 };
const ROLLUP_FIELDS = Object.keys(ROLLUP_TEMPLATE) as (keyof RollupsTable)[];

/** Compiled statements' SQL per backend, by statement and row count. */
const compiled = new WeakMap<object, Map<string, string>>();

/**
 * A multi-row statement as Kysely compiles it for the backend's dialect, its SQL built once per
 * statement and row count (from `build` over template rows, which have every column, so every
 * value is one parameter), and its parameters laid out straight from the records: column after
 * column, row after row, as Kysely orders them. Building Kysely's value nodes anew for 22
 * columns × 1000 rows was most of the writer's own CPU time per batch. `tail` follows each
 * record's fields: values of columns the records do not hold, the same for every row.
 */
function compiledRows<T>(db: object, name: string, records: readonly T[], fields: readonly (keyof T)[], build: (n: number) => CompiledQuery, tail: readonly unknown[] = []): CompiledQuery {
  let cache = compiled.get(db);
  if (!cache) {
    cache = new Map();
    compiled.set(db, cache);
  }
  const key = `${name}/${records.length}`;
  let text = cache.get(key);
  if (text === undefined) {
    text = build(records.length).sql;
    // Bounded: full batches share one; a remainder's size repeats rarely.
    if (cache.size >= 128) cache.clear();
    cache.set(key, text);
  }
  const params: unknown[] = new Array<unknown>(records.length * (fields.length + tail.length));
  let i = 0;
  for (const r of records) {
    for (const f of fields) params[i++] = r[f] ?? null;
    for (const v of tail) params[i++] = v;
  }
  return CompiledQuery.raw(text, params);
}

/** The INSERT of these request rows; on SQLite into segment `seg`. */
export function requestsInsert(backend: Pick<Backend, "db">, rows: readonly RequestRow[], seg?: number): CompiledQuery {
  if (seg === undefined) return compiledRows(backend.db, "requests", rows, REQUEST_FIELDS, (n) => backend.db.insertInto("requests").values(Array.from({ length: n }, () => REQUEST_TEMPLATE)).compile());
  return compiledRows(backend.db, "requests/seg", rows, REQUEST_FIELDS, (n) => backend.db.insertInto("requests").values(Array.from({ length: n }, () => SEGMENT_TEMPLATE)).compile(), [seg]);
}

/**
 * SQLite: the segment this batch's rows go into, and the statement that counts them in it and
 * widens its time span. The newest segment, or the next once it holds SEGMENT_ROWS rows (segment
 * 0, the rows stored before segments, is never added to). Read inside the batch's transaction,
 * which holds the file's write lock: two writers of one file never pick from a stale newest.
 */
async function segmentOf(trx: Transaction<AnalyticsDB>, rows: readonly RequestRow[]): Promise<{ seg: number; upsert: CompiledQuery }> {
  const newest = await trx.selectFrom("request_segments").select(["seg", "n"]).orderBy("seg", "desc").limit(1).executeTakeFirst();
  const seg = newest === undefined ? 1 : newest.seg === 0 || newest.n >= SEGMENT_ROWS ? newest.seg + 1 : newest.seg;
  let first = Infinity;
  let last = -Infinity;
  for (const r of rows) {
    if (r.at < first) first = r.at;
    if (r.at > last) last = r.at;
  }
  const upsert = sql`insert into request_segments (seg, first_at, last_at, n) values (${seg}, ${first}, ${last}, ${rows.length})
    on conflict (seg) do update set first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at), n = n + excluded.n`.compile(trx);
  return { seg, upsert };
}

/** The upsert adding these increments to the rollups. */
export function rollupsUpsert(backend: Pick<Backend, "db">, increments: readonly RollupsTable[]): CompiledQuery {
  return compiledRows(backend.db, "rollups", increments, ROLLUP_FIELDS, (n) =>
    backend.db
      .insertInto("rollups")
      .values(Array.from({ length: n }, () => ROLLUP_TEMPLATE))
      .onConflict((oc) =>
        oc.columns(ROLLUP_KEY).doUpdateSet((eb) => {
          const add = (col: "n" | "check_micros_sum" | "upstream_n" | "upstream_micros_sum" | "request_bytes" | "response_bytes") => eb(`rollups.${col}`, "+", eb.ref(`excluded.${col}`));
          const max = (col: "check_micros_max" | "upstream_micros_max") =>
            eb.case().when(eb.ref(`excluded.${col}`), ">", eb.ref(`rollups.${col}`)).then(eb.ref(`excluded.${col}`)).else(eb.ref(`rollups.${col}`)).end();
          return {
            n: add("n"),
            check_micros_sum: add("check_micros_sum"),
            check_micros_max: max("check_micros_max"),
            upstream_n: add("upstream_n"),
            upstream_micros_sum: add("upstream_micros_sum"),
            upstream_micros_max: max("upstream_micros_max"),
            request_bytes: add("request_bytes"),
            response_bytes: add("response_bytes"),
          };
        }),
      )
      .compile(),
  );
}

export function toRequestRecord(r: RequestRow): Insertable<RequestsTable> {
  const out: Record<string, unknown> = {};
  for (const [field, { column }] of Object.entries(REQUEST_COLUMNS)) out[column] = (r as unknown as Record<string, unknown>)[field] ?? null;
  return out as Insertable<RequestsTable>;
}

/** The status the client got: the upstream's when it answered, keyward's otherwise. */
export function clientStatus(r: Pick<RequestRow, "status" | "upstreamStatus">): number {
  return r.upstreamStatus ?? r.status;
}

/** The batch's rollup increments, one per day × key × route × status × country × outcome, in conflict-key order. */
export function rollupIncrements(rows: readonly RequestRow[]): RollupsTable[] {
  const acc = new Map<string, RollupsTable>();
  for (const r of rows) {
    const day = Math.floor(r.at / DAY_MS);
    const route = r.route ?? "";
    const status = clientStatus(r);
    const country = r.country ?? "";
    const k = JSON.stringify([day, r.uid, r.keyId, route, status, country, r.outcome]);
    let x = acc.get(k);
    if (!x) {
      x = { day, uid: r.uid, key_id: r.keyId, route, status, country, outcome: r.outcome, n: 0, check_micros_sum: 0, check_micros_max: 0, upstream_n: 0, upstream_micros_sum: 0, upstream_micros_max: 0, request_bytes: 0, response_bytes: 0 };
      acc.set(k, x);
    }
    x.n++;
    x.check_micros_sum += r.checkMicros;
    x.check_micros_max = Math.max(x.check_micros_max, r.checkMicros);
    if (r.upstreamMicros !== undefined) {
      x.upstream_n++;
      x.upstream_micros_sum += r.upstreamMicros;
      x.upstream_micros_max = Math.max(x.upstream_micros_max, r.upstreamMicros);
    }
    x.request_bytes += r.requestBytes ?? 0;
    x.response_bytes += r.responseBytes ?? 0;
  }
  return [...acc.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
}

export interface WriterOptions {
  /** Per-request rows older than this (ms) are not kept (they only add to the rollups): retention would drop them. */
  keepRequestsFrom: () => number;
}

export async function writeRequests(backend: Backend, rows: readonly RequestRow[], options: WriterOptions): Promise<void> {
  if (rows.length === 0) return;
  const from = options.keepRequestsFrom();
  const kept = rows.filter((r) => r.at >= from);
  await backend.prepareDays(kept.map((r) => Math.floor(r.at / DAY_MS)));
  const increments = rollupIncrements(rows);
  await backend.db.transaction().execute(async (trx) => {
    const segment = backend.kind === "sqlite" && kept.length > 0 ? await segmentOf(trx, kept) : undefined;
    const run = statementRunner(backend, trx);
    if (segment) await run(segment.upsert);
    for (const c of statementChunks(kept, backend.statementRows)) await run(requestsInsert(backend, c, segment?.seg));
    for (const c of statementChunks(increments, backend.statementRows)) await run(rollupsUpsert(backend, c));
  });
}

/**
 * Runs a transaction's statements one after another; between two statements of a synchronous
 * backend (SQLite runs each to its end on this thread), the calls and I/O waiting go first.
 */
function statementRunner(backend: Pick<Backend, "yieldBetweenStatements">, trx: Transaction<AnalyticsDB>): (q: CompiledQuery) => Promise<QueryResult<unknown>> {
  let ran = 0;
  return async (q) => {
    if (ran++ > 0 && backend.yieldBetweenStatements) await yieldToLoop();
    return trx.executeQuery(q);
  };
}

const KEYS_TEMPLATE: KeysTable = { uid: "", namespace: "", name: "", owner: "", scopes: "", created_at: 0, expires_at: null, deleted_at: null, updated_at: 0 };
const KEYS_FIELDS = Object.keys(KEYS_TEMPLATE) as (keyof KeysTable)[];
const LABEL_TEMPLATE: KeyLabelsTable = { uid: "", name: "", value: "" };
const LABEL_FIELDS = Object.keys(LABEL_TEMPLATE) as (keyof KeyLabelsTable)[];
/** What a key record may change; a record equal in all of them leaves its row as it is. */
const KEY_CHANGES = ["namespace", "name", "owner", "scopes", "created_at", "expires_at"] as const;

/**
 * The upsert of these key records. A record the store already holds as it is (every restart
 * sends every ApiKey's) leaves its row unwritten: the update runs only when a field changed, or
 * when the record brings the key's deletion.
 */
export function keysUpsert(backend: Pick<Backend, "db">, records: readonly KeysTable[]): CompiledQuery {
  return compiledRows(backend.db, "keys", records, KEYS_FIELDS, (n) =>
    backend.db
      .insertInto("keys")
      .values(Array.from({ length: n }, () => KEYS_TEMPLATE))
      .onConflict((oc) =>
        oc
          .column("uid")
          .doUpdateSet((eb) => ({
            namespace: eb.ref("excluded.namespace"),
            name: eb.ref("excluded.name"),
            owner: eb.ref("excluded.owner"),
            scopes: eb.ref("excluded.scopes"),
            created_at: eb.ref("excluded.created_at"),
            expires_at: eb.ref("excluded.expires_at"),
            // A uid is never reused: once deleted, it stays deleted whatever a late update says.
            deleted_at: eb.fn.coalesce("excluded.deleted_at", "keys.deleted_at"),
            updated_at: eb.ref("excluded.updated_at"),
          }))
          .where((eb) =>
            eb.or([
              ...KEY_CHANGES.map((c) => eb(`keys.${c}`, "is distinct from", eb.ref(`excluded.${c}`))),
              eb.and([eb("keys.deleted_at", "is", null), eb("excluded.deleted_at", "is not", null)]),
            ]),
          ),
      )
      .compile(),
  );
}

/**
 * The key records into the store, in statements of a few sizes only (statementChunks, as the
 * rows): each prepared statement's size grows with its rows, and a statement per batch size
 * would leave one of every size in the connection's statement cache (about 40 MiB of SQLite's
 * heap after the 100,000 records of a start, benchmarks.md).
 */
export async function upsertKeys(backend: Backend, keys: readonly KeyRecord[], now: number): Promise<void> {
  if (keys.length === 0) return;
  const byUid = new Map(keys.map((k) => [k.uid, k]));
  const sorted = [...byUid.values()].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  const records: KeysTable[] = sorted.map((k) => ({
    uid: k.uid,
    namespace: k.namespace,
    name: k.name,
    owner: k.owner,
    scopes: JSON.stringify([...k.scopes]),
    created_at: k.createdAt,
    expires_at: k.expiresAt ?? null,
    deleted_at: k.deletedAt ?? null,
    updated_at: now,
  }));
  const uids = sorted.map((k) => ({ uid: k.uid }));
  const n = backend.statementRows;
  await backend.db.transaction().execute(async (trx) => {
    const run = statementRunner(backend, trx);
    for (const c of statementChunks(records, n)) await run(keysUpsert(backend, c));
    // Labels are rewritten only for the keys whose labels the store holds otherwise: a restart
    // sends every ApiKey's record, and most keys' labels have not changed since the last.
    const held = new Map<string, Record<string, string>>();
    for (const c of statementChunks(uids, n)) {
      const { rows } = await run(compiledRows(backend.db, "labels-select", c, ["uid"], (m) => backend.db.selectFrom("key_labels").select(["uid", "name", "value"]).where("uid", "in", Array.from({ length: m }, () => "")).compile()));
      for (const r of rows as KeyLabelsTable[]) {
        const set = held.get(r.uid) ?? {};
        set[r.name] = r.value;
        held.set(r.uid, set);
      }
    }
    const changed = sorted.filter((k) => !sameLabels(k.labels, held.get(k.uid) ?? {}));
    const stale = changed.filter((k) => held.has(k.uid)).map((k) => ({ uid: k.uid }));
    const labels: KeyLabelsTable[] = changed.flatMap((k) => Object.entries(k.labels).map(([name, value]) => ({ uid: k.uid, name, value })));
    for (const c of statementChunks(stale, n)) await run(compiledRows(backend.db, "labels-delete", c, ["uid"], (m) => backend.db.deleteFrom("key_labels").where("uid", "in", Array.from({ length: m }, () => "")).compile()));
    for (const c of statementChunks(labels, n)) await run(compiledRows(backend.db, "labels", c, LABEL_FIELDS, (m) => backend.db.insertInto("key_labels").values(Array.from({ length: m }, () => LABEL_TEMPLATE)).compile()));
  });
}

/** Whether two label sets are the same (names and values, in any order). */
function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  return names.every((name) => Object.hasOwn(b, name) && b[name] === a[name]);
}
