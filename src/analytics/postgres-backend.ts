// The shared backend for several replicas: PostgreSQL through a pg pool.
// Per-request rows live in one partition per UTC day, created ahead of use and
// dropped whole by retention. Schema changes and partition DDL are serialised
// across replicas with advisory locks. The pool replaces connections lost to a
// restarted server: a write during the outage fails, later ones succeed.
import pg from "pg";
import { Kysely, PostgresDialect, sql } from "kysely";
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { postgresPassword, storeFailed, type Backend } from "./backend.ts";
import { DAY_MS, type AnalyticsDB } from "./schema.ts";

export interface PostgresOptions {
  /** postgres://user:password@host:port/database?sslmode=... */
  url: string;
  /** Connections this process opens at most. */
  poolSize?: number;
  /** How long opening a connection may take, at start and after. */
  connectTimeoutMs?: number;
  /** How long one statement may run before the server cancels it. */
  statementTimeoutMs?: number;
}

// Advisory lock keys: "keyward" schema changes, and partition DDL.
const SCHEMA_LOCK = 0x6b657977_00000001n;
const PARTITION_LOCK = 0x6b657977_00000002n;

const { INT8, NUMERIC } = pg.types.builtins;
const toNumber = (v: string): number => Number(v);

/** 64-bit counts and sums come back as numbers: every figure the store keeps stays far below 2^53. */
const types: pg.CustomTypesConfig = {
  getTypeParser: (oid, format) => (oid === INT8 || oid === NUMERIC ? toNumber : (pg.types.getTypeParser(oid, format) as unknown)),
};

/** The URL as it may be shown: no password. */
export function postgresWhere(url: string): { where: string; password: string | undefined } {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new KeywardError("ConfigInvalid", "--analytics-postgres-url is not a postgres:// URL", { cause: new Error((err as Error).name) });
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") throw new KeywardError("ConfigInvalid", `--analytics-postgres-url: ${u.protocol}// is not postgres://`);
  const password = postgresPassword(url);
  const user = u.username ? `${decodeURIComponent(u.username)}@` : "";
  return { where: `postgres://${user}${u.host}${u.pathname}`, password };
}

function partitionName(day: number): string {
  return `requests_${new Date(day * DAY_MS).toISOString().slice(0, 10).replaceAll("-", "")}`;
}

function partitionDay(name: string): number | undefined {
  const m = /^requests_(\d{4})(\d{2})(\d{2})$/.exec(name);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) / DAY_MS : undefined;
}

export async function openPostgres(options: PostgresOptions, log: Logger): Promise<Backend> {
  const { where, password } = postgresWhere(options.url);
  // An idle connection the server dropped (a restart): the pool discards it and opens another when next needed.
  const lost = (err: Error): void => {
    log.warn("analytics store connection lost", { store: where, err: storeFailed(where, err, password) });
  };
  // Every connection is heard from the moment it exists: one lost while checked out (between two
  // statements of a batch), or while the pool is still handing it over, reports on the client
  // itself, and unheard that error would end the process. The statement in progress fails, and
  // the batch with it.
  class HeardClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      this.on("error", lost);
    }
  }
  const pool = new pg.Pool({
    Client: HeardClient,
    connectionString: options.url,
    max: options.poolSize ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    keepAlive: true,
    application_name: "keyward",
    types,
  });
  // The pool repeats an idle connection's error, which its client's own listener has logged.
  pool.on("error", () => {});
  try {
    await pool.query("select 1");
  } catch (err) {
    await pool.end().catch(() => {});
    throw storeFailed(where, err, password);
  }
  const db = new Kysely<AnalyticsDB>({ dialect: new PostgresDialect({ pool }) });
  const known = new Set<number>();

  const withLock = async <T>(key: bigint, fn: () => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    try {
      await client.query("select pg_advisory_lock($1)", [key.toString()]);
      try {
        return await fn();
      } finally {
        await client.query("select pg_advisory_unlock($1)", [key.toString()]);
      }
    } finally {
      client.release();
    }
  };

  return {
    kind: "postgres",
    // 22 columns × 1000 rows stays under the protocol's 65,535 parameters; the server does the work.
    statementRows: 1000,
    yieldBetweenStatements: false,
    db,
    where,
    withSchemaLock: (fn) => withLock(SCHEMA_LOCK, fn),
    prepareDays: async (days) => {
      const missing = [...new Set(days)].filter((d) => !known.has(d));
      if (missing.length === 0) return;
      await db.transaction().execute(async (trx) => {
        await sql`select pg_advisory_xact_lock(${PARTITION_LOCK.toString()}::bigint)`.execute(trx);
        for (const day of missing) {
          await sql`create table if not exists ${sql.id(partitionName(day))} partition of requests for values from (${sql.lit(day * DAY_MS)}) to (${sql.lit((day + 1) * DAY_MS)})`.execute(trx);
        }
      });
      for (const d of missing) known.add(d);
    },
    dropRequestsBefore: async (cutoff) => {
      const parts = await sql<{ name: string }>`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'requests'::regclass`.execute(db);
      const old = parts.rows.map((r) => ({ name: r.name, day: partitionDay(r.name) })).filter((p): p is { name: string; day: number } => p.day !== undefined && (p.day + 1) * DAY_MS <= cutoff);
      if (old.length === 0) return 0;
      await db.transaction().execute(async (trx) => {
        await sql`select pg_advisory_xact_lock(${PARTITION_LOCK.toString()}::bigint)`.execute(trx);
        for (const p of old) await sql`drop table if exists ${sql.id(p.name)}`.execute(trx);
      });
      for (const p of old) known.delete(p.day);
      return old.length;
    },
    close: async () => {
      await db.destroy();
    },
  };
}
