// Run as a script by writer-compact.test.ts: starts the analytics writer thread on a SQLite file
// in argv[2] and, once it has opened the store and before any call, prints its heap (MiB: the
// pages it holds and what lives on them, process.report) as JSON.
import { silentLogger } from "../log.ts";
import { startWriterThread } from "./writer-thread.ts";

const path = process.argv[2];
if (!path) throw new Error("usage: writer-compact.test-support.ts FILE");
const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

const writer = startWriterThread({ store: "sqlite", sqlitePath: path, postgresUrl: "", retentionMs: 86_400_000, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true }, silentLogger);
await writer.opened;
const report = process.report.getReport() as unknown as { workers: { javascriptHeap: { totalMemory: number; usedMemory: number } }[] };
const [only, ...others] = report.workers;
if (!only || others.length) throw new Error(`${report.workers.length} threads running, expected one`);
process.stdout.write(JSON.stringify({ total: mib(only.javascriptHeap.totalMemory), used: mib(only.javascriptHeap.usedMemory) }));
await writer.close();
