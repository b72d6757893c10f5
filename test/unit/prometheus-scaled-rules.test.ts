// The time-scaled copy of keyward's rules the Prometheus suite runs: every span
// divided, every other number kept, nothing of the shipped file left unscaled.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { durationMs, formatDuration, scaleExpr, scaledRules, type RuleFile } from "../support/prometheus.ts";

const shipped = readFileSync(join(resolve(import.meta.dirname, "..", ".."), "deploy", "prometheus", "keyward.rules.yaml"), "utf8");
const SPAN = /\[[^\]]+\]|offset \S+/g;
const spans = (expr: string): string[] => expr.match(SPAN) ?? [];
/** An expression with its spans blanked out and staleness thresholds dropped: what scaling must not touch. */
const rest = (expr: string): string => expr.replace(SPAN, "<span>").replace(/(_staleness_seconds\b[^\n]*?>=?\s*)\d+(?:\.\d+)?/g, "$1<age>");

describe("scaledRules", () => {
  it("parses and prints Prometheus durations", () => {
    expect(durationMs("1h30m")).toBe(5_400_000);
    expect(durationMs("250ms")).toBe(250);
    expect(durationMs("3d")).toBe(259_200_000);
    expect(() => durationMs("5 minutes")).toThrow(/not a Prometheus duration/);
    expect(formatDuration(5000)).toBe("5s");
    expect(formatDuration(4_320_000)).toBe("4320s");
    expect(formatDuration(500)).toBe("500ms");
  });

  it("scales ranges, subqueries, offsets and staleness ages, and nothing else", () => {
    expect(scaleExpr('sum(rate(x{le="0.005"}[5m])) > 14.4 * 0.001', 60)).toBe('sum(rate(x{le="0.005"}[5s])) > 14.4 * 0.001');
    expect(scaleExpr("increase(x[1h] offset 1h) and max_over_time(y[1h:1m])", 60)).toBe("increase(x[60s] offset 60s) and max_over_time(y[60s:1s])");
    expect(scaleExpr("keyward_authz_index_staleness_seconds > 300", 60)).toBe("keyward_authz_index_staleness_seconds > 5");
    expect(scaleExpr("histogram_quantile(0.99, rate(keyward_revocation_propagation_seconds_bucket[10m])) > 5", 60)).toBe(
      "histogram_quantile(0.99, rate(keyward_revocation_propagation_seconds_bucket[10s])) > 5",
    );
  });

  it("divides every span of the shipped rules and keeps the rest as shipped", () => {
    const before = parse(shipped) as RuleFile;
    const after = parse(scaledRules(shipped, 60)) as RuleFile;
    const rules = (f: RuleFile) => f.groups.flatMap((g) => g.rules);
    const [a, b] = [rules(before), rules(after)];
    expect(b.map((r) => r.alert ?? r.record)).toEqual(a.map((r) => r.alert ?? r.record));
    let scaled = 0;
    a.forEach((r, i) => {
      const s = b[i];
      if (!s) throw new Error("rule missing");
      expect(rest(s.expr), r.alert ?? r.record).toBe(rest(r.expr));
      expect(s.for === undefined ? undefined : durationMs(s.for)).toBe(r.for === undefined ? undefined : durationMs(r.for) / 60);
      const [x, y] = [spans(r.expr), spans(s.expr)];
      expect(y.length).toBe(x.length);
      x.forEach((span, j) => {
        const d = (t: string): number[] => [...t.matchAll(/\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*/g)].map((m) => durationMs(m[0]));
        expect(d(y[j] ?? "")).toEqual(d(span).map((ms) => ms / 60));
        scaled++;
      });
      const { alert, record, expr: _e, for: _f, ...other } = r;
      const { alert: _a, record: _r, expr: _e2, for: _f2, ...otherScaled } = s;
      expect(otherScaled, alert ?? record).toEqual(other);
    });
    expect(scaled).toBeGreaterThan(60);
    // The one age threshold: the stale index alert's 300 s.
    expect(b.find((r) => r.alert === "KeywardAuthzIndexStale")?.expr).toContain("> 5");
  });
});
