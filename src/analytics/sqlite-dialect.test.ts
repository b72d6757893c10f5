import { DatabaseSync } from "node:sqlite";
import { Kysely, sql } from "kysely";
import { describe, expect, it } from "vitest";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";

interface DB {
  t: { id: number; v: string | null };
}

function open(): Kysely<DB> {
  const raw = new DatabaseSync(":memory:");
  raw.exec("create table t (id integer primary key, v text)");
  return new Kysely<DB>({ dialect: new NodeSqliteDialect(raw) });
}

describe("NodeSqliteDialect", () => {
  it("runs Kysely's SQLite SQL on node:sqlite: inserts, selects, updates", async () => {
    const db = open();
    const ins = await db.insertInto("t").values([{ id: 1, v: "a" }, { id: 2, v: null }]).executeTakeFirst();
    expect(ins.numInsertedOrUpdatedRows).toBe(2n);
    expect(await db.selectFrom("t").selectAll().orderBy("id").execute()).toEqual([{ id: 1, v: "a" }, { id: 2, v: null }]);
    const upd = await db.updateTable("t").set({ v: "b" }).where("id", "=", 2).executeTakeFirst();
    expect(upd.numUpdatedRows).toBe(1n);
    await db.destroy();
  });

  it("hands its one connection to one transaction at a time: concurrent transactions do not interleave", async () => {
    const db = open();
    // Without the hand-over, the second `begin` would run inside the first transaction and fail.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        db.transaction().execute(async (trx) => {
          await trx.insertInto("t").values({ id: i, v: "x" }).execute();
          await new Promise((r) => setImmediate(r));
          await trx.updateTable("t").set({ v: `done ${i}` }).where("id", "=", i).execute();
        }),
      ),
    );
    const rows = await db.selectFrom("t").select(sql<number>`count(*)`.as("n")).where("v", "like", "done %").executeTakeFirstOrThrow();
    expect(rows.n).toBe(20);
    await db.destroy();
  });

  it("rolls a failed transaction back and frees the connection for the next", async () => {
    const db = open();
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto("t").values({ id: 1, v: "a" }).execute();
        await trx.insertInto("t").values({ id: 1, v: "again" }).execute();
      }),
    ).rejects.toThrow(/UNIQUE/);
    expect(await db.selectFrom("t").selectAll().execute()).toEqual([]);
    await db.insertInto("t").values({ id: 1, v: "a" }).execute();
    expect(await db.selectFrom("t").selectAll().execute()).toHaveLength(1);
    await db.destroy();
  });
});
