// Run as a script (with `--max-semi-space-size=4`, the chart's authz.nodeOptions, or without):
// starts the analytics writer thread on a SQLite file in argv[2] and writes key records through
// it, then reads them back a few times on the reader thread, makes garbage on the main thread,
// and prints the new space (MiB committed) of the main isolate, the writer's and the reader's
// (process.report, each read while its thread is the only one) as JSON.
import { getHeapSpaceStatistics } from "node:v8";
import { silentLogger } from "../log.ts";
import type { KeyRecord } from "./row.ts";
import { openSqliteReader } from "./sqlite-reader.ts";
import { startWriterThread } from "./writer-thread.ts";

const path = process.argv[2];
if (!path) throw new Error("usage: thread-young.test-support.ts FILE");
const mib = (bytes: number): number => bytes / 2 ** 20;
/** The new space of the one thread running now. */
const threadNewSpace = (): number => {
  const report = process.report.getReport() as unknown as { workers: { javascriptHeap: { heapSpaces: Record<string, { memorySize: number }> } }[] };
  const [only, ...others] = report.workers;
  if (!only || others.length) throw new Error(`${report.workers.length} threads running, expected one`);
  return mib(only.javascriptHeap.heapSpaces["new_space"]?.memorySize ?? 0);
};

const writer = startWriterThread({ store: "sqlite", sqlitePath: path, postgresUrl: "", retentionMs: 86_400_000, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true }, silentLogger);
await writer.opened;
const record = (i: number): KeyRecord => ({ uid: `uid-${i}`, namespace: "ns", name: `key-${i}`, owner: "team", labels: { tier: "gold", i: String(i) }, scopes: ["read"], createdAt: 1_700_000_000_000 });
for (let round = 0; round < 4; round++) await writer.upsertKeys(Array.from({ length: 2000 }, (_, i) => record(round * 2000 + i)));
const writerNewSpace = threadNewSpace();
await writer.close();

const reader = await openSqliteReader(path, silentLogger, { idleMs: 0 });
for (let i = 0; i < 10; i++) await reader.selectFrom("key_labels").selectAll().execute();
const readerNewSpace = threadNewSpace();
await reader.destroy();

// Garbage on the main thread, as checks make: its new space grows to what the flag allows.
let keep: object[] = [];
for (let i = 0; i < 2_000_000; i++) {
  keep.push({ i });
  if (keep.length > 20_000) keep = [];
}
const main = mib(getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0);
process.stdout.write(JSON.stringify({ main, writer: writerNewSpace, reader: readerNewSpace, kept: keep.length }) + "\n");
