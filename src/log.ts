// Structured logs: one JSON object per line on stderr. Fields are plain values;
// errors are flattened to their message, code and cause chain. Never pass a
// plaintext API key in a message or a field: log the key id or hash instead.
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  enabled(level: Level): boolean;
}

export interface LoggerOptions {
  level?: Level;
  /** Where lines go; default process.stderr. */
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

export function createLogger(opts: LoggerOptions = {}, base: Fields = {}): Logger {
  const min = ORDER[opts.level ?? "info"];
  const sink = opts.sink ?? ((line: string) => process.stderr.write(line + "\n"));
  const now = opts.now ?? (() => new Date());
  const write = (level: Level, msg: string, fields?: Fields): void => {
    if (ORDER[level] < min) return;
    const record: Fields = { ts: now().toISOString(), level, msg, ...base };
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (k === "err") Object.assign(record, errorFields(v));
      else record[k] = v;
    }
    sink(JSON.stringify(record));
  };
  return {
    debug: (m, f) => { write("debug", m, f); },
    info: (m, f) => { write("info", m, f); },
    warn: (m, f) => { write("warn", m, f); },
    error: (m, f) => { write("error", m, f); },
    child: (fields) => createLogger(opts, { ...base, ...fields }),
    enabled: (level) => ORDER[level] >= min,
  };
}

/** A logger that writes nothing, for tests and embedders. */
export const silentLogger: Logger = createLogger({ sink: () => undefined, level: "error" });
