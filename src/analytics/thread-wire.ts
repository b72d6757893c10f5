// What the check thread and the analytics store's threads (the writer,
// writer-thread.ts; the SQLite reader, sqlite-reader.ts) say to each other. Calls carry an id and are answered once,
// with a result or an error; the worker's log lines come over too, so they
// reach keyward's one log with the caller's fields. Errors cross as their
// message, code and cause chain (what keyward's log shows of an error), never
// as the original object, which may hold a connection string.
import { KeywardError, type ErrorCode } from "../errors.ts";
import type { Fields, Level, Logger, PreparedLine } from "../log.ts";
import type { KeyRecord } from "./row.ts";
import type { RowBatch } from "./row-batch.ts";

/** A call to the writer thread. */
export type WriterCall =
  | { op: "rows"; batch: RowBatch }
  | { op: "keys"; keys: readonly KeyRecord[] }
  | { op: "retention" }
  /** The SQLite connection's page cache from now on (KiB); nothing on PostgreSQL. */
  | { op: "pageCache"; kib: number }
  | { op: "close" };

/** A statement for the SQLite reader thread (sqlite-reader.ts), or its close. */
export type ReaderCall = { op: "query"; sql: string; parameters: readonly unknown[] } | { op: "close" };

/** An error as it crosses threads. */
export interface WireError {
  message: string;
  code?: string | number;
  /** KeywardError's own code, so start-up failures keep theirs (AnalyticsStoreFailed, ConfigInvalid). */
  keyward?: ErrorCode;
  causes: WireError[];
}

/** What a store thread says: its start, each call's answer (with its id), its log lines. */
export type ThreadReply =
  | { op: "ready" }
  | { op: "failed"; error: WireError }
  | { op: "done"; id: number; result?: unknown }
  | { op: "error"; id: number; error: WireError }
  | { op: "log"; level: Level; msg: string; fields: Fields };

/** `err` with its code and cause chain (at most 5 deep), as plain data. */
export function toWire(err: unknown, depth = 0): WireError {
  if (!(err instanceof Error)) return { message: String(err), causes: [] };
  const code = "code" in err && (typeof err.code === "string" || typeof err.code === "number") ? err.code : undefined;
  return {
    message: err.message,
    ...(code !== undefined ? { code } : {}),
    ...(err instanceof KeywardError ? { keyward: err.code } : {}),
    causes: err.cause !== undefined && depth < 5 ? [toWire(err.cause, depth + 1)] : [],
  };
}

/** The error again: a KeywardError with its code when it was one, else an Error with its code. */
export function fromWire(w: WireError): Error {
  const cause = w.causes[0] ? fromWire(w.causes[0]) : undefined;
  const opts = cause ? { cause } : undefined;
  if (w.keyward) return new KeywardError(w.keyward, w.message, opts);
  const e = new Error(w.message, opts);
  if (w.code !== undefined) Object.assign(e, { code: w.code });
  return e;
}

/** Fields safe to post: `err` (or any Error) as its wire form. */
function wireFields(fields: Fields | undefined): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields ?? {})) out[k] = v instanceof Error || k === "err" ? { wireError: toWire(v) } : v;
  return out;
}

/** The fields a forwarded line had, with its errors rebuilt for keyward's log. */
export function unwireFields(fields: Fields): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields)) {
    const w = v !== null && typeof v === "object" && "wireError" in v ? (v as { wireError: WireError }).wireError : undefined;
    out[k] = w ? fromWire(w) : v;
  }
  return out;
}

/** A Logger whose lines are posted to the thread that owns keyward's log, which writes them with its own fields. */
export function forwardingLogger(post: (r: ThreadReply) => void, enabled: (level: Level) => boolean, base: Fields = {}): Logger {
  const write = (level: Level, msg: string, fields?: Fields): void => {
    if (!enabled(level)) return;
    try {
      post({ op: "log", level, msg, fields: wireFields({ ...base, ...fields }) });
    } catch {
      // A field that cannot cross threads (a function, a socket): the line goes without its fields.
      post({ op: "log", level, msg, fields: { fieldsDropped: true } });
    }
  };
  return {
    debug: (m, f) => { write("debug", m, f); },
    info: (m, f) => { write("info", m, f); },
    warn: (m, f) => { write("warn", m, f); },
    error: (m, f) => { write("error", m, f); },
    child: (fields) => forwardingLogger(post, enabled, { ...base, ...fields }),
    enabled,
    prepare: (level, msg, fields): PreparedLine => (more) => { write(level, msg, more ? { ...fields, ...more } : fields); },
  };
}
