// Structured logs: one JSON object per line on stderr. Fields are plain values;
// errors are flattened to their message, code and cause chain. Never pass a
// plaintext API key in a message or a field: log the key id or hash instead.
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

/** A line whose message and first fields were rendered once; each call writes it with the fields given. */
export type PreparedLine = (more?: Fields) => void;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  enabled(level: Level): boolean;
  /**
   * For a line written often with the same leading fields: `line(more)` writes exactly what
   * `log[level](msg, { ...fields, ...more })` would, rendering `fields` only once.
   */
  prepare(level: Level, msg: string, fields: Fields): PreparedLine;
}

export interface LoggerOptions {
  level?: Level;
  /** Where lines go; default stderrSink(). */
  sink?: (line: string) => void;
  now?: () => Date;
}

/** Flattens an error into loggable fields, following `cause`. */
export function errorFields(err: unknown): Fields {
  if (!(err instanceof Error)) return { error: String(err) };
  const out: Fields = { error: err.message };
  if ("code" in err && err.code !== undefined) out.errorCode = err.code;
  const causes: string[] = [];
  let c: unknown = err.cause;
  while (c !== undefined && causes.length < 5) {
    causes.push(c instanceof Error ? c.message : JSON.stringify(c));
    c = c instanceof Error ? c.cause : undefined;
  }
  if (causes.length) out.causes = causes;
  return out;
}

/** Adds a line's fields to its record, an error as its flattened fields. */
function put(record: Fields, fields: Fields | undefined): void {
  for (const [k, v] of Object.entries(fields ?? {})) {
    if (k === "err") Object.assign(record, errorFields(v));
    else record[k] = v;
  }
}

export function createLogger(opts: LoggerOptions = {}, base: Fields = {}): Logger {
  const min = ORDER[opts.level ?? "info"];
  const sink = opts.sink ?? stderrSink();
  const now = opts.now ?? (() => new Date());
  const write = (level: Level, msg: string, fields?: Fields): void => {
    if (ORDER[level] < min) return;
    const record: Fields = { ts: now().toISOString(), level, msg, ...base };
    put(record, fields);
    sink(JSON.stringify(record));
  };
  const prepare = (level: Level, msg: string, fields: Fields): PreparedLine => {
    if (ORDER[level] < min) return () => undefined;
    const slow: PreparedLine = (more) => {
      write(level, msg, more ? { ...fields, ...more } : fields);
    };
    // The record write() builds, less its timestamp: `{"ts":…` is put in front per line.
    const record: Fields = { level, msg, ...base };
    put(record, fields);
    const taken = new Set(Object.keys(record));
    // write() would put these first or elsewhere: rendered the slow way.
    if (taken.has("ts") || [...taken].some(isIndex)) return slow;
    taken.add("ts");
    taken.add("err");
    const fixed = JSON.stringify(record).slice(1, -1);
    return (more) => {
      let rest = "";
      if (more) {
        for (const k of Object.keys(more)) {
          if (taken.has(k) || isIndex(k)) {
            slow(more);
            return;
          }
          // undefined for what an object leaves out (undefined, functions).
          const v = JSON.stringify(more[k]) as string | undefined;
          if (v !== undefined) rest += `,${JSON.stringify(k)}:${v}`;
        }
      }
      sink(`{"ts":"${now().toISOString()}",${fixed}${rest}}`);
    };
  };
  return {
    debug: (m, f) => { write("debug", m, f); },
    info: (m, f) => { write("info", m, f); },
    warn: (m, f) => { write("warn", m, f); },
    error: (m, f) => { write("error", m, f); },
    child: (fields) => createLogger(opts, { ...base, ...fields }),
    enabled: (level) => ORDER[level] >= min,
    prepare,
  };
}

/** Keys that objects order before all others (array indices). */
function isIndex(k: string): boolean {
  const c = k.charCodeAt(0);
  return c >= 48 && c <= 57 && /^(?:0|[1-9]\d*)$/.test(k) && Number(k) < 2 ** 32 - 1;
}

/**
 * Writes the lines given to it in one event-loop turn with as few writes as it can: each
 * write is whole lines of at most `maxBytes` (a line longer than that goes alone), in the
 * order given. `flush()` writes what is pending at once.
 */
export function batchedSink(
  write: (chunk: string) => void,
  schedule: (flush: () => void) => void,
  maxBytes: number,
): { sink: (line: string) => void; flush: () => void } {
  let pending = "";
  let bytes = 0;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending === "") return;
    const out = pending;
    pending = "";
    bytes = 0;
    write(out);
  };
  const sink = (line: string): void => {
    const text = line + "\n";
    const n = Buffer.byteLength(text);
    if (bytes > 0 && bytes + n > maxBytes) flush();
    pending += text;
    bytes += n;
    if (!scheduled) {
      scheduled = true;
      schedule(flush);
    }
  };
  return { sink, flush };
}

/**
 * All writers of a process to stderr (or stdout) share one sink, so lines keep their order. At
 * thousands of lines a second (denials; the decision log), one write per line was a system call
 * each; lines are now written together at the end of the event-loop turn that produced them. A
 * write stays within the 4,096 bytes that a pipe takes atomically (PIPE_BUF), so lines of
 * several processes on one pipe (--authz-workers) never interleave. stdout and stderr writes are
 * synchronous on Linux for files, pipes and terminals: what is pending when the process exits is
 * written on 'exit'.
 */
const shared = new Map<"stdout" | "stderr", (line: string) => void>();
export function streamSink(which: "stdout" | "stderr"): (line: string) => void {
  const known = shared.get(which);
  if (known) return known;
  const stream = which === "stdout" ? process.stdout : process.stderr;
  const b = batchedSink(
    (chunk) => stream.write(chunk),
    (flush) => setImmediate(flush),
    4096,
  );
  process.on("exit", b.flush);
  shared.set(which, b.sink);
  return b.sink;
}

/** The sink of keyward's own log: streamSink("stderr"). */
export function stderrSink(): (line: string) => void {
  return streamSink("stderr");
}

/** A logger that writes nothing, for tests and embedders. */
export const silentLogger: Logger = createLogger({ sink: () => undefined, level: "error" });
