// The flags of one command (keyward usage, keyward review), taken out of the
// command line before the rest goes to keyward's settings (loadConfig): a
// command's own flags are not settings, and a setting (--analytics-store,
// --kubeconfig, ...) is not a command's flag.
import { SETTINGS } from "../config/config.ts";
import { KeywardError } from "../errors.ts";

/** True when `--flag` (without a value) is a setting that takes the next word as its value. */
function settingTakesValue(flag: string): boolean {
  const st = Object.values(SETTINGS).find((x) => x.flag === flag);
  return st !== undefined && st.kind !== "bool";
}

export type FlagKind = "string" | "bool";

export interface CommandFlags {
  /** Each flag given, by its long name: its value ("true" for a bool). */
  values: Map<string, string>;
  /** Words that are not flags (a view name). */
  words: string[];
  /** Everything else, for loadConfig. */
  rest: string[];
}

/** Splits `argv` into the command's flags (`--name v`, `--name=v`, and `-o v` / `-ov` for `output`) and the rest. */
export function splitFlags(command: string, argv: readonly string[], spec: Readonly<Record<string, FlagKind>>): CommandFlags {
  const values = new Map<string, string>();
  const words: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    let name: string | undefined;
    let value: string | undefined;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      value = eq === -1 ? undefined : a.slice(eq + 1);
    } else if (a.startsWith("-o") && "output" in spec) {
      name = "output";
      value = a.length > 2 ? a.slice(a[2] === "=" ? 3 : 2) : undefined;
    } else if (!a.startsWith("-")) {
      words.push(a);
      continue;
    }
    const kind = name === undefined ? undefined : spec[name];
    if (name === undefined || kind === undefined) {
      // A setting: it and its value (when separate) go to loadConfig as they are.
      rest.push(a);
      if (name !== undefined && value === undefined && a.startsWith("--") && settingTakesValue(name) && i + 1 < argv.length) rest.push(argv[++i] ?? "");
      continue;
    }
    if (kind === "bool") value ??= "true";
    else if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new KeywardError("ConfigInvalid", `keyward ${command}: --${name} needs a value`);
    }
    if (values.has(name)) throw new KeywardError("ConfigInvalid", `keyward ${command}: --${name} given twice`);
    values.set(name, value);
  }
  return { values, words, rest };
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** A duration such as `90m`, `36h`, `7d` or `2w` in ms, or undefined when `text` is not one. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,6})([smhdw])$/.exec(text.trim());
  return m ? Number(m[1]) * (UNITS[m[2] as string] as number) : undefined;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?$/;

/** `--since`/`--until`: a duration back from now (`7d`) or an RFC 3339 time (`2026-06-01`, `2026-06-01T08:00:00Z`; a date is its UTC midnight). */
export function parseInstant(flag: string, text: string, now: number): number {
  const back = parseDuration(text);
  if (back !== undefined) return now - back;
  if (RFC3339.test(text.trim())) {
    const t = text.trim();
    const ms = Date.parse(t.length === 10 ? `${t}T00:00:00Z` : t.replace(" ", "T"));
    if (Number.isFinite(ms)) return ms;
  }
  throw new KeywardError("ConfigInvalid", `--${flag}=${JSON.stringify(text)}: give a duration back from now (30m, 12h, 7d, 2w) or an RFC 3339 date or time (2026-06-01, 2026-06-01T08:00:00Z)`);
}

/** A positive whole number flag. */
export function parseCount(flag: string, text: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) throw new KeywardError("ConfigInvalid", `--${flag}=${JSON.stringify(text)}: give a whole number of 1 or more`);
  return Number(text);
}

/** One of the allowed values. */
export function parseChoice<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) throw new KeywardError("ConfigInvalid", `--${flag}=${JSON.stringify(text)}: one of ${allowed.join(", ")}`);
  return text as T;
}
