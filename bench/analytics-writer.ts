// The analytics writer's CPU per row on SQLite, in process and in CPU time: what the
// keyward-writer thread does with each batch (src/analytics/writer-worker.ts), phase by phase,
// into a store that already holds --seed-rows per-request rows (spread over the days before now,
// with their rollups), rows made for --keys keys in turn (each batch of 1,000 rows has 1,000
// keys: the check bench's pattern, the worst for the writes' locality), one row every 20 µs.
// Phases, each in CPU µs per row: decoding the batch's columns (the check thread encodes them:
// not counted), placing networks and countries (the shipped country database), and the store's
// transaction (writeRequests: the per-request rows, the rollups and the commit). --profile
// writes a V8 CPU profile of the measured batches (./analytics-writer.cpuprofile);
// --drop-index a,b drops those indexes of the rows after seeding (what each one costs).
//
//   node bench/analytics-writer.ts [--keys 100000] [--seed-rows 2000000] [--rows 200000]
//                                  [--rounds 3] [--batch 1000] [--profile] [--drop-index requests_seg_uid_at]
//                                  [--cache-kib N: the writer connection's SQLite page cache instead of keyward's]
// One JSON line per round on stdout, then the medians.
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { openCountryDatabase } from "../src/analytics/geo.ts";
import { RowBatchDecoder, RowBatchEncoder } from "../src/analytics/row-batch.ts";
import type { RequestRow } from "../src/analytics/row.ts";
import { placeGeography, unplacedRowFromCheck } from "../src/analytics/rows.ts";
import * as schema from "../src/analytics/schema.ts";
import { shopRequest } from "./analytics.ts";
import { openWriteStore } from "../src/analytics/write-store.ts";
import type { CheckEvent } from "../src/check/event.ts";
import { silentLogger } from "../src/log.ts";
import { median } from "./lib/stats.ts";

const DAY = 86_400_000;
const ROUTES = 20;
/** Rows per segment, in a keyward whose SQLite store has segments (ADR 62); this bench measures one without them too. */
const SEGMENT_ROWS = (schema as { SEGMENT_ROWS?: number }).SEGMENT_ROWS;

/** The uid of key k, shaped as Kubernetes makes them (36 characters). */
export const benchUid = (k: number): string => `6f1c2a9e-0b7d-4c3e-9a51-${k.toString(16).padStart(12, "0")}`;

/**
 * Row i: key i % keys, one row every 20 µs from `start`. Each key keeps its route, its source
 * network (hence country) and its outcome, as one client of one API mostly does: a key's rows of
 * a day add to one rollup, which the first pass over the keys makes and the next passes add to.
 */
function row(i: number, keys: number, start: number): RequestRow {
  const k = i % keys;
  const allowed = k % 10 < 8;
  const route = k % ROUTES;
  const e = {
    at: start + Math.floor(i / 50),
    front: "grpc",
    key: { uid: benchUid(k), keyId: `kw_${k.toString(36)}` },
    requestId: `req-${i.toString(36)}-b7e1c0`,
    ...shopRequest(route, i, allowed),
    source: `${81 + (k % 7)}.${(k >> 3) % 200}.${(k >> 5) % 250}.${i % 250}`,
    latencySeconds: 0.00004 + (i % 60) / 1e6,
  } as unknown as CheckEvent;
  return unplacedRowFromCheck(e)!;
}

/** Seeds `n` rows over the `days` days before `end`, keys in turn, with their rollups, straight in SQL (indexes built after). */
function seed(path: string, n: number, keys: number, end: number, days: number, dropIndexes: readonly string[]): void {
  const db = new DatabaseSync(path);
  const indexes = db.prepare("select name, sql from sqlite_master where type = 'index' and tbl_name = 'requests' and sql is not null").all() as { name: string; sql: string }[];
  db.exec("begin immediate");
  for (const x of indexes) db.exec(`drop index ${x.name}`);
  const uid = `'6f1c2a9e-0b7d-4c3e-9a51-' || printf('%012x', i % ${keys})`;
  // A store with segments (ADR 62) gets the rows in segments of SEGMENT_ROWS in time order, as its writer fills them.
  const segments = SEGMENT_ROWS !== undefined;
  if (n > 0)
    db.exec(`insert into requests (at, request_id, uid, key_id, front, policy, rule, route, method, host, path, outcome, reason, status, source, network, country, check_micros${segments ? ", seg" : ""})
    with recursive g(i) as (select 0 union all select i + 1 from g where i < ${n - 1})
    select ${end - days * DAY} + (i * ${days * DAY}) / ${n}, 'req-' || i, ${uid}, 'kw_' || (i % ${keys}), 'grpc', 'shop/api', 'main', 'GET /v1/items' || (i % ${ROUTES}) || '/{id}', 'GET', 'api.example.com',
      '/v1/items' || (i % ${ROUTES}) || '/' || (i % 5000), 'allowed', 'allowed', 200, '81.2.' || (i % 250) || '.' || (i % 251), '81.2.' || (i % 250) || '.0/24', 'GB', 40 + i % 60${segments ? `, 1 + i / ${SEGMENT_ROWS}` : ""} from g`);
  for (const x of indexes) db.exec(x.sql);
  db.exec(`insert into rollups (day, uid, key_id, route, status, country, outcome, n, check_micros_sum, check_micros_max, upstream_n, upstream_micros_sum, upstream_micros_max, request_bytes, response_bytes)
    select at / ${DAY}, uid, key_id, coalesce(route, ''), coalesce(upstream_status, status), coalesce(country, ''), outcome, count(*), sum(check_micros), max(check_micros), 0, 0, 0, 0, 0
    from requests group by 1, 2, 3, 4, 5, 6, 7 order by 1, 2, 3, 4, 5, 6, 7`);
  if (segments) db.exec("insert or replace into request_segments (seg, first_at, last_at, n) select seg, min(at), max(at), count(*) from requests group by seg");
  db.exec("commit");
  for (const x of dropIndexes) db.exec(`drop index ${x}`);
  db.exec("pragma wal_checkpoint(truncate)");
  db.close();
}

export interface WriterRound {
  rows: number;
  /** CPU µs per row, by phase. */
  decode: number;
  geography: number;
  store: number;
  total: number;
  /** The file (and its WAL) after the round, bytes. */
  fileBytes: number;
}

const cpuMicros = (): number => {
  const u = process.threadCpuUsage();
  return u.user + u.system;
};
const round1 = (x: number): number => Math.round(x * 10) / 10;

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      keys: { type: "string", default: "100000" },
      "seed-rows": { type: "string", default: "2000000" },
      rows: { type: "string", default: "200000" },
      rounds: { type: "string", default: "3" },
      profile: { type: "boolean", default: false },
      "drop-index": { type: "string", default: "" },
      batch: { type: "string", default: "1000" },
      "cache-kib": { type: "string", default: "" },
    },
  });
  const keys = Number(values.keys);
  const rowsPerRound = Number(values.rows);
  const BATCH = Number(values.batch);
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-writer-"));
  const path = join(dir, "analytics.sqlite");
  const now = Date.now();
  const options = { store: "sqlite" as const, sqlitePath: path, postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now };
  try {
    await (await openWriteStore(options, silentLogger)).close();
    const t0 = performance.now();
    seed(path, Number(values["seed-rows"]), keys, now - 60_000, 7, values["drop-index"].split(",").filter(Boolean));
    console.error(`[writer] seeded ${values["seed-rows"]} rows in ${Math.round(performance.now() - t0)} ms`);
    const store = await openWriteStore(options, silentLogger);
    // The connection's page cache, when not keyward's (sqlite-file.ts).
    if (values["cache-kib"]) await store.pageCache(Number(values["cache-kib"]));
    const geo = await openCountryDatabase();
    const encoder = new RowBatchEncoder();
    const decoder = new RowBatchDecoder();
    let next = 0;
    const session = values.profile ? new Session() : undefined;
    if (session) {
      session.connect();
      await session.post("Profiler.enable");
    }
    const rounds: WriterRound[] = [];
    // A warm-up round of one row per key (statements prepared, the country database read, the
    // day's rollups made), then the measured rounds.
    for (let r = 0; r <= Number(values.rounds); r++) {
      if (r === 1 && session) await session.post("Profiler.start");
      let decode = 0;
      let geography = 0;
      let write = 0;
      for (let i = 0; i < (r === 0 ? keys : rowsPerRound); i += BATCH) {
        const made = Array.from({ length: BATCH }, () => row(next++, keys, now - 60_000));
        const batch = encoder.encode(made);
        const c0 = cpuMicros();
        const rows = decoder.decode(batch);
        const c1 = cpuMicros();
        placeGeography(rows, geo);
        const c2 = cpuMicros();
        await store.writeRequests(rows);
        const c3 = cpuMicros();
        decode += c1 - c0;
        geography += c2 - c1;
        write += c3 - c2;
      }
      if (r === 0) continue;
      const per = (x: number): number => round1(x / rowsPerRound);
      const fileBytes = statSync(path).size + (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0);
      const round: WriterRound = { rows: rowsPerRound, decode: per(decode), geography: per(geography), store: per(write), total: per(decode + geography + write), fileBytes };
      rounds.push(round);
      process.stdout.write(`${JSON.stringify(round)}\n`);
    }
    if (session) {
      const { profile } = await session.post("Profiler.stop");
      writeFileSync("analytics-writer.cpuprofile", JSON.stringify(profile));
      session.disconnect();
    }
    await store.close();
    const med = (k: "decode" | "geography" | "store" | "total"): number => median(rounds.map((x) => x[k]));
    process.stdout.write(`${JSON.stringify({ keys, seedRows: Number(values["seed-rows"]), median: { decode: med("decode"), geography: med("geography"), store: med("store"), total: med("total") } })}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
