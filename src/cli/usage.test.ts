import { describe, expect, it } from "vitest";
import { parseInstant, splitFlags } from "./args.ts";
import { csvField, render } from "./output.ts";
import { parseUsageRequest, USAGE_FLAGS } from "./usage.ts";

const NOW = Date.UTC(2026, 5, 15, 12, 0, 0);
const DAY = 86_400_000;

const parse = (argv: string[]) => {
  const { values, words, rest } = splitFlags("usage", argv, USAGE_FLAGS);
  return { request: parseUsageRequest(words, values, NOW), rest };
};

describe("keyward usage: command line", () => {
  it("takes its own flags and leaves keyward's settings, with their values, to loadConfig", () => {
    const { values, words, rest } = splitFlags("usage", ["timeline", "--analytics-store", "sqlite", "--key=team-a/checkout", "-o", "csv", "--by", "day", "--analytics-sqlite-path=/x.db", "--no-leader-elect"], USAGE_FLAGS);
    expect(words).toEqual(["timeline"]);
    expect(Object.fromEntries(values)).toEqual({ key: "team-a/checkout", output: "csv", by: "day" });
    expect(rest).toEqual(["--analytics-store", "sqlite", "--analytics-sqlite-path=/x.db", "--no-leader-elect"]);
    expect(Object.fromEntries(splitFlags("usage", ["-ojson"], USAGE_FLAGS).values)).toEqual({ output: "json" });
  });

  it("defaults to top keys over the last 7 days as a table", () => {
    expect(parse([]).request).toEqual({ view: "keys", filter: { since: NOW - 7 * DAY, until: NOW }, by: "hour", limit: 20, output: "table" });
  });

  it("builds the filter from every flag", () => {
    const { request } = parse(["endpoints", "--namespace=team-a,team-b", "--owner", "alice", "--selector", "tier=gold,!legacy", "--key", "kw_chk00001", "--since", "2026-06-01", "--until", "2026-06-10T06:00:00+02:00", "--by", "path", "--limit", "5"]);
    expect(request).toEqual({
      view: "endpoints",
      filter: { since: Date.UTC(2026, 5, 1), until: Date.UTC(2026, 5, 10, 4), namespaces: ["team-a", "team-b"], owner: "alice", selector: "tier=gold,!legacy", key: "kw_chk00001" },
      by: "path",
      limit: 5,
      output: "table",
    });
  });

  it("reads durations back from now and RFC 3339 times", () => {
    expect(parseInstant("since", "90m", NOW)).toBe(NOW - 90 * 60_000);
    expect(parseInstant("since", "36h", NOW)).toBe(NOW - 36 * 3_600_000);
    expect(parseInstant("since", "2w", NOW)).toBe(NOW - 14 * DAY);
    expect(parseInstant("since", "2026-06-01T08:00:00Z", NOW)).toBe(Date.UTC(2026, 5, 1, 8));
  });

  it.each([
    [["--since", "yesterday"], /--since="yesterday": give a duration back from now/],
    [["--since", "7x"], /--since="7x"/],
    [["--until", "2026-13-45"], /--until="2026-13-45"/],
    [["--since", "1d", "--until", "2d"], /--since .* must be before --until/],
    [["--output", "yaml"], /--output="yaml": one of table, json, csv/],
    [["timeline", "--by", "week"], /--by="week": one of hour, day/],
    [["endpoints", "--by", "hour"], /--by="hour": one of route, path/],
    [["countries", "--by", "day"], /--by applies to the timeline/],
    [["top"], /--view="top": one of keys, timeline/],
    [["--limit", "0"], /--limit="0": give a whole number/],
    [["--selector", "tier=a b"], /label selector/],
    [["--key", "a/b/c"], /--key="a\/b\/c": give namespace\/name or a key id/],
    [["--owner"], /--owner needs a value/],
    [["--owner", "a", "--owner", "b"], /--owner given twice/],
  ])("refuses %j with a clear error", (argv, message) => {
    expect(() => parse(argv)).toThrow(message);
  });
});

describe("keyward usage: output", () => {
  const cols = [
    { header: "NAME", cell: (r: { name: string; n: number }) => r.name },
    { header: "N", cell: (r: { name: string; n: number }) => String(r.n) },
  ];
  const rows = [{ name: "a,b", n: 1 }, { name: 'say "hi"', n: 22 }];

  it("prints a table, CSV with quoting, or the JSON document", () => {
    expect(render("table", cols, rows, {})).toBe('NAME       N\na,b        1\nsay "hi"   22\n');
    expect(render("csv", cols, rows, {})).toBe('NAME,N\r\n"a,b",1\r\n"say ""hi""",22\r\n');
    expect(JSON.parse(render("json", cols, rows, { rows }))).toEqual({ rows });
    expect(render("table", cols, [], {})).toBe("no requests on record for this filter\n");
    expect(csvField("line\nbreak")).toBe('"line\nbreak"');
  });
});
