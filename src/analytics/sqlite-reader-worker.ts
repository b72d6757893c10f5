// The SQLite reader thread's own code (started by sqlite-reader.ts): one
// connection to the store's file, running the statements it is given (the
// views' queries, the alert evaluator's reads and its alert state) one at a
// time, to their end, on this thread rather than the one answering checks.
import { CompiledQuery } from "kysely";
import type { Backend } from "./backend.ts";
import { openSqlite } from "./sqlite-backend.ts";
import { serveCalls } from "./thread-calls.ts";
import type { ReaderCall } from "./thread-wire.ts";

await serveCalls<ReaderCall & { id: number }, Backend>(
  (data) => Promise.resolve(openSqlite({ path: data as string })),
  async (backend, call) => {
    if (call.op === "close") return backend.close();
    return backend.db.executeQuery(CompiledQuery.raw(call.sql, [...call.parameters]));
  },
  "close",
);
