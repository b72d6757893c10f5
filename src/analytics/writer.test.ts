import { DummyDriver, Kysely, sql, type CompiledQuery, type DatabaseConnection, type QueryResult, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler } from "kysely";
import { describe, expect, it } from "vitest";
import type { Backend } from "./backend.ts";
import type { KeyRecord, RequestRow } from "./row.ts";
import { openSqlite } from "./sqlite-backend.ts";
import { applyMigrations, REQUEST_COLUMNS, type AnalyticsDB } from "./schema.ts";
import { keysUpsert, requestsInsert, rollupIncrements, rollupsUpsert, statementChunks, toRequestRecord, upsertKeys } from "./writer.ts";

const base: RequestRow = { at: Date.UTC(2026, 0, 2, 3), uid: "u1", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 10 };

describe("rollupIncrements", () => {
  it("adds a batch up per day, key, route, client status, country and outcome", () => {
    const inc = rollupIncrements([
      base,
      { ...base, checkMicros: 30, upstreamStatus: 200, upstreamMicros: 500, requestBytes: 10, responseBytes: 99 },
      { ...base, upstreamStatus: 503, upstreamMicros: 7 },
      { ...base, at: base.at + 86_400_000 },
      { ...base, route: "GET /x", country: "DE" },
    ]);
    expect(inc).toHaveLength(4);
    const first = inc.find((r) => r.status === 200 && r.route === "" && r.day === 20455);
    expect(first).toMatchObject({ n: 2, check_micros_sum: 40, check_micros_max: 30, upstream_n: 1, upstream_micros_sum: 500, request_bytes: 10, response_bytes: 99, country: "" });
    expect(inc.find((r) => r.status === 503)).toMatchObject({ n: 1, upstream_micros_max: 7 });
  });

  it("orders increments by their conflict key, so concurrent writers lock rollups in one order", () => {
    const rows = ["c", "a", "b"].map((uid) => ({ ...base, uid }));
    expect(rollupIncrements(rows).map((r) => r.uid)).toEqual(["a", "b", "c"]);
  });
});

describe("toRequestRecord", () => {
  it("stores every field of a row in its column, and absent fields as null", () => {
    const rec = toRequestRecord({ ...base, path: "/a" }) as Record<string, unknown>;
    expect(Object.keys(rec).sort()).toEqual(Object.values(REQUEST_COLUMNS).map((c) => c.column).sort());
    expect(rec).toMatchObject({ at: base.at, key_id: "kw_1", check_micros: 10, path: "/a", upstream_status: null });
  });
});

describe("the writer's compiled statements", () => {
  const dialects = {
    sqlite: new Kysely<AnalyticsDB>({
      dialect: { createAdapter: () => new SqliteAdapter(), createDriver: () => new DummyDriver(), createIntrospector: (db) => new SqliteIntrospector(db), createQueryCompiler: () => new SqliteQueryCompiler() },
    }),
    postgres: new Kysely<AnalyticsDB>({
      dialect: { createAdapter: () => new PostgresAdapter(), createDriver: () => new DummyDriver(), createIntrospector: (db) => new PostgresIntrospector(db), createQueryCompiler: () => new PostgresQueryCompiler() },
    }),
  };
  const rows: RequestRow[] = [
    { ...base, path: "/a", requestId: "r1", upstreamStatus: 200, upstreamMicros: 9, requestBytes: 1, responseBytes: 2 },
    { ...base, uid: "u2", country: "DE", network: "203.0.113.0/24", source: "203.0.113.9" },
    { ...base, route: "GET /x", policy: "ns/p", rule: "r" },
  ];

  for (const [name, db] of Object.entries(dialects)) {
    it(`${name}: the INSERT of rows is the one Kysely builds from their records, for each row count`, () => {
      for (const n of [1, 2, 3, 2]) {
        const batch = rows.slice(0, n);
        const mine = requestsInsert({ db }, batch);
        const kysely = db.insertInto("requests").values(batch.map(toRequestRecord)).compile();
        expect(mine.sql).toBe(kysely.sql);
        expect(mine.parameters).toEqual(kysely.parameters);
      }
    });

    it(`${name}: the rollup upsert's parameters are laid out as Kysely lays out the increments`, () => {
      const inc = rollupIncrements(rows);
      const mine = rollupsUpsert({ db }, inc);
      const values = db.insertInto("rollups").values(inc).compile();
      expect(mine.sql.startsWith(values.sql)).toBe(true);
      expect(mine.sql).toMatch(/on conflict/i);
      expect(mine.parameters).toEqual(values.parameters);
    });
  }
});

describe("statementChunks", () => {
  it("takes full statements, then the rest in descending powers of two, every row once and in order", () => {
    const xs = Array.from({ length: 1000 + 77 }, (_, i) => i);
    const c = statementChunks(xs, 100);
    expect(c.map((x) => x.length)).toEqual([...Array<number>(10).fill(100), 64, 8, 4, 1]);
    expect(c.flat()).toEqual(xs);
    // However many rows a batch has, its statements come in 1 + 7 sizes.
    const sizes = new Set(Array.from({ length: 300 }, (_, n) => statementChunks(Array.from({ length: n }, () => 0), 100).map((x) => x.length)).flat());
    expect([...sizes].sort((a, b) => a - b)).toEqual([1, 2, 4, 8, 16, 32, 64, 100]);
    expect(statementChunks(xs.slice(0, 1000), 1000).map((x) => x.length)).toEqual([1000]);
  });
});

describe("upsertKeys", () => {
  const key = (i: number, over: Partial<KeyRecord> = {}): KeyRecord => ({ uid: `u${String(i).padStart(6, "0")}`, namespace: "ns", name: `k${i}`, owner: "o", labels: { team: "a", tier: String(i % 3) }, scopes: ["read"], createdAt: 1000, ...over });

  it("runs its statements in a few sizes only, however many records a batch has", async () => {
    const seen = new Set<string>();
    class Recording extends DummyDriver {
      override acquireConnection(): Promise<DatabaseConnection> {
        return Promise.resolve({
          executeQuery: <R>(q: CompiledQuery): Promise<QueryResult<R>> => {
            seen.add(q.sql);
            return Promise.resolve({ rows: [] });
          },
          // eslint-disable-next-line require-yield
          streamQuery: async function* <R>(): AsyncIterableIterator<QueryResult<R>> {
            await Promise.resolve();
            throw new Error("no streams");
          },
        });
      }
    }
    const db = new Kysely<AnalyticsDB>({
      dialect: { createAdapter: () => new SqliteAdapter(), createDriver: () => new Recording(), createIntrospector: (d) => new SqliteIntrospector(d), createQueryCompiler: () => new SqliteQueryCompiler() },
    });
    const backend = { kind: "sqlite", db, where: "test", statementRows: 100, yieldBetweenStatements: false, withSchemaLock: (fn) => fn(), prepareDays: async () => {}, dropRequestsBefore: () => Promise.resolve(0), close: async () => {} } satisfies Backend;
    let next = 0;
    for (let n = 1; n <= 260; n += 7) await upsertKeys(backend, Array.from({ length: n }, () => key(next++)), 1);
    const statements = [...seen].filter((s) => !/^(begin|commit|rollback)/i.test(s));
    // Four statements (keys, the labels' select, their delete, the labels), each in at most 1 + 7 sizes.
    expect(statements.length).toBeLessThanOrEqual(4 * 8);
  });

  it("leaves a record the store holds as it is unwritten, writes a changed one, and keeps a deletion", async () => {
    const backend = openSqlite({ path: ":memory:" });
    try {
      await applyMigrations(backend.db, "sqlite", () => 0);
      const row = async () => backend.db.selectFrom("keys").selectAll().where("uid", "=", key(1).uid).executeTakeFirstOrThrow();
      const labels = async () => (await backend.db.selectFrom("key_labels").select(["name", "value"]).where("uid", "=", key(1).uid).orderBy("name").execute()).map((l) => `${l.name}=${l.value}`);
      await upsertKeys(backend, [key(1)], 10);
      await upsertKeys(backend, [key(1)], 20);
      expect(await row()).toMatchObject({ owner: "o", updated_at: 10, deleted_at: null });
      await upsertKeys(backend, [key(1, { owner: "p", labels: { team: "b" } })], 30);
      expect(await row()).toMatchObject({ owner: "p", updated_at: 30 });
      expect(await labels()).toEqual(["team=b"]);
      await upsertKeys(backend, [key(1, { owner: "p", labels: { team: "b" }, deletedAt: 35 })], 40);
      expect(await row()).toMatchObject({ deleted_at: 35, updated_at: 40 });
      // A late update of a deleted key: it stays deleted.
      await upsertKeys(backend, [key(1, { owner: "q", labels: { team: "b" } })], 50);
      expect(await row()).toMatchObject({ owner: "q", deleted_at: 35, updated_at: 50 });
    } finally {
      await backend.close();
    }
  });

  it("rewrites only the labels that changed: records sent again as they were change no row", async () => {
    const backend = openSqlite({ path: ":memory:" });
    try {
      await applyMigrations(backend.db, "sqlite", () => 0);
      const changes = async (): Promise<number> => (await sql<{ n: number }>`select total_changes() as n`.execute(backend.db)).rows[0]?.n ?? NaN;
      const labels = async (i: number) => (await backend.db.selectFrom("key_labels").select(["name", "value"]).where("uid", "=", key(i).uid).orderBy("name").execute()).map((l) => `${l.name}=${l.value}`);
      const keys = [key(1), key(2), key(3)];
      await upsertKeys(backend, keys, 10);
      // A restart: every record again, none changed.
      let before = await changes();
      await upsertKeys(backend, keys, 20);
      expect((await changes()) - before).toBe(0);
      // One label changed, one key's labels all gone, one key as it was.
      before = await changes();
      await upsertKeys(backend, [key(1), key(2, { labels: { team: "a", tier: "9" } }), key(3, { labels: {} })], 30);
      // key 2: its two labels deleted and two inserted; key 3: its two deleted; key 1: nothing.
      expect((await changes()) - before).toBe(6);
      expect(await labels(1)).toEqual(["team=a", "tier=1"]);
      expect(await labels(2)).toEqual(["team=a", "tier=9"]);
      expect(await labels(3)).toEqual([]);
      // A label added to a key that had none.
      await upsertKeys(backend, [key(3, { labels: { team: "c" } })], 40);
      expect(await labels(3)).toEqual(["team=c"]);
    } finally {
      await backend.close();
    }
  });

  it("postgres: the upsert skips unchanged rows with IS DISTINCT FROM", () => {
    const db = new Kysely<AnalyticsDB>({
      dialect: { createAdapter: () => new PostgresAdapter(), createDriver: () => new DummyDriver(), createIntrospector: (d) => new PostgresIntrospector(d), createQueryCompiler: () => new PostgresQueryCompiler() },
    });
    const q = keysUpsert({ db }, [{ uid: "u", namespace: "ns", name: "k", owner: "o", scopes: "[]", created_at: 1, expires_at: null, deleted_at: null, updated_at: 2 }]);
    expect(q.sql).toMatch(/do update set .* where .*"keys"\."owner" is distinct from "excluded"\."owner"/);
    expect(q.parameters).toEqual(["u", "ns", "k", "o", "[]", 1, null, null, 2]);
  });
});
