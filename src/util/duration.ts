// Go-style durations (1h30m, 250ms), as configuration and the CRDs write them.
import { KeywardError } from "../errors.ts";

const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go duration (1h30m, 250ms) into milliseconds; throws on anything else. */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (t === "0") return 0;
  if (!DURATION_RE.test(t)) {
    throw new KeywardError("ConfigInvalid", `"${text}" is not a duration; write it like 500ms, 15s, 1m30s or 720h`);
  }
  let ms = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * (UNIT_MS[m[2] ?? "ms"] ?? 1);
  return ms;
}

/** Formats milliseconds as a Go duration (1h0m0s style is shortened: 90000 -> 1m30s). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  let rest = Math.round(ms / 1000);
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const sec = rest - m * 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${sec ? `${sec}s` : ""}`;
}
