// What the store needs of a database engine beyond the shared Kysely queries:
// how to open it, how replicas serialise schema changes, how per-request rows
// of a day are made writable and how old ones are removed. The writer, the
// queries and retention's rollup pruning are written once, in Kysely, against
// every backend. A new engine (ClickHouse, say) is one module implementing this.
import type { Kysely } from "kysely";
import { KeywardError } from "../errors.ts";
import type { AnalyticsDB, BackendKind } from "./schema.ts";

export interface Backend {
  readonly kind: BackendKind;
  readonly db: Kysely<AnalyticsDB>;
  /** Where the store is, without credentials, for messages and logs. */
  readonly where: string;
  /**
   * Rows one multi-row statement of a batch carries at most. A backend whose statements run on
   * the event loop's own thread (node:sqlite) keeps them short and is given `yieldBetweenStatements`,
   * so that checks are answered between two statements of a batch rather than after all of them.
   */
  readonly statementRows: number;
  readonly yieldBetweenStatements: boolean;
  /** Runs `fn` while holding the schema lock every replica and process of this store takes before migrating. */
  withSchemaLock<T>(fn: () => Promise<T>): Promise<T>;
  /** Makes per-request rows of these UTC days (days since the epoch) writable; called before a batch is written. */
  prepareDays(days: readonly number[]): Promise<void>;
  /** Removes every per-request row with `at` before `cutoff` (a UTC day start); returns the rows (or days) removed. */
  dropRequestsBefore(cutoff: number): Promise<number>;
  close(): Promise<void>;
}

/** The analytics store's start-up failure: the store cannot be opened, reached, or written. Never carries a password. */
export function storeFailed(where: string, err: unknown, secret?: string): KeywardError {
  const scrub = (s: string): string => (secret ? s.split(secret).join("***") : s);
  const msg = scrub(err instanceof Error ? err.message : String(err));
  // The cause is rebuilt from its message and code only: the original may hold the connection string.
  const cause = new Error(msg);
  const code = err instanceof Error && "code" in err ? (err as { code?: unknown }).code : undefined;
  if (code !== undefined) Object.assign(cause, { code });
  return new KeywardError("AnalyticsStoreFailed", `analytics store ${where}: ${msg}`, { cause });
}

/** The URL's password, to scrub from messages; undefined when it has none or is not a URL. */
export function postgresPassword(url: string): string | undefined {
  try {
    const p = new URL(url).password;
    return p ? decodeURIComponent(p) : undefined;
  } catch {
    return undefined;
  }
}
