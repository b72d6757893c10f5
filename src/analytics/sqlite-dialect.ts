// A Kysely dialect over Node's built-in SQLite (node:sqlite's DatabaseSync).
// Kysely's own SQLite dialect expects better-sqlite3; this one is the same SQL
// compiler and adapter with a driver over DatabaseSync. The one connection is
// handed to one query or transaction at a time by Kysely itself (the SQLite
// adapter says it has a single connection), so two batches written at once
// never interleave inside a transaction.
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";
import {
  CompiledQuery,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
} from "kysely";

/** Prepared statements kept per connection, by SQL text (the writer and the queries reuse a few dozen). */
const STATEMENT_CACHE = 200;

function bind(v: unknown): SQLInputValue {
  if (v === undefined || v === null) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "string" || v instanceof Uint8Array) return v;
  if (v instanceof Date) return v.getTime();
  return JSON.stringify(v);
}

class NodeSqliteConnection implements DatabaseConnection {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, { stmt: StatementSync; reader: boolean }>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  #prepare(text: string): { stmt: StatementSync; reader: boolean } {
    let p = this.#statements.get(text);
    if (p) return p;
    const stmt = this.#db.prepare(text);
    p = { stmt, reader: stmt.columns().length > 0 };
    if (this.#statements.size >= STATEMENT_CACHE) this.#statements.clear();
    this.#statements.set(text, p);
    return p;
  }

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    try {
      const { stmt, reader } = this.#prepare(query.sql);
      const params = query.parameters.map(bind);
      if (reader) return Promise.resolve({ rows: stmt.all(...params) as R[] });
      const { changes, lastInsertRowid } = stmt.run(...params);
      return Promise.resolve({ rows: [], numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid) });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async *streamQuery<R>(query: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    const { stmt } = this.#prepare(query.sql);
    for (const row of stmt.iterate(...query.parameters.map(bind))) yield { rows: [row as R] };
  }
}

/** Transactions on SQLite's one connection, whatever runs its statements. */
export abstract class SqliteTransactions {
  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    // IMMEDIATE takes the write lock at once: another process on the same file waits (busy_timeout) instead of failing at commit.
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("commit"));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("rollback"));
  }
}

class NodeSqliteDriver extends SqliteTransactions implements Driver {
  readonly #db: DatabaseSync;
  readonly #connection: NodeSqliteConnection;

  constructor(db: DatabaseSync) {
    super();
    this.#db = db;
    this.#connection = new NodeSqliteConnection(db);
  }

  async init(): Promise<void> {}

  acquireConnection(): Promise<DatabaseConnection> {
    return Promise.resolve(this.#connection);
  }

  async releaseConnection(): Promise<void> {}

  destroy(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
    return Promise.resolve();
  }
}

/** Kysely's SQLite SQL and adapter over the driver `createDriver` makes. */
export class SqliteDialectOver implements Dialect {
  readonly #createDriver: () => Driver;
  constructor(createDriver: () => Driver) {
    this.#createDriver = createDriver;
  }
  createDriver(): Driver {
    return this.#createDriver();
  }
  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }
  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

/** Kysely's SQLite SQL, run by node:sqlite on `db` (opened, and its pragmas set, by the caller). */
export class NodeSqliteDialect extends SqliteDialectOver {
  constructor(db: DatabaseSync) {
    super(() => new NodeSqliteDriver(db));
  }
}
