// The console's pure logic: URL <-> filters, formatting, CSV, sorting, windowing, palette
// contrast and polling.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { getView, HeldAnswers } from "./api.js";
import { csvCell, reviewCsv, toCsv } from "./csv.js";
import { compactParams, filterProblems, parseTime, readFilters, readSort, readView, stepFor, viewHref } from "./filters.js";
import { formatCount, formatDateTime, formatLabels, formatMicros, formatRelative } from "./format.js";
import { Poller } from "./live.js";
import { CHART_BG, CHART_GRID, CHART_TEXT, SERIES, TEXT_PAIRS, UI_PAIRS, contrastRatio } from "./palette.js";
import { nextOrder, sortRows } from "./sort.js";
import { visibleRange } from "./windowing.js";

const NOW = Date.parse("2026-12-01T15:00:00Z");

describe("filters in the URL", () => {
  it("reads the filters, trimmed, empty when absent", () => {
    expect(readFilters(new URLSearchParams("namespace=team-a&owner=%20bob%20&selector=tier%3Dpaid&since=7d"))).toEqual({ namespace: "team-a", owner: "bob", selector: "tier=paid", since: "7d", until: "" });
  });

  it("writes only the filters that are set, so the usage API never sees an empty parameter", () => {
    expect(compactParams({ namespace: "team-a", owner: "", selector: " ", since: undefined, limit: 10 }).toString()).toBe("namespace=team-a&limit=10");
  });

  it("round-trips: a page link holds the filters it was made from", () => {
    const f = { namespace: "team-a", owner: "ops@example.com", selector: "tier=paid,app!=x", since: "2026-11-01", until: "" };
    const href = viewHref("key", f, { key: "team-a/k1" });
    expect(href).toBe("./?view=key&key=team-a%2Fk1&namespace=team-a&owner=ops%40example.com&selector=tier%3Dpaid%2Capp%21%3Dx&since=2026-11-01");
    const params = new URL(href, "http://x/console/").searchParams;
    expect(readFilters(params)).toEqual(f);
    expect(readView(params)).toBe("key");
    const none = { namespace: "", owner: "", selector: "", since: "", until: "" };
    expect(viewHref("keys", none)).toBe("./");
    expect(viewHref("alerts", none)).toBe("./?view=alerts");
    expect(readView(new URLSearchParams("view=constructor"))).toBe("keys");
  });

  it("parses times as the usage API does", () => {
    expect(parseTime("24h", NOW)).toBe(NOW - 86_400_000);
    expect(parseTime("90d", NOW)).toBe(NOW - 90 * 86_400_000);
    expect(parseTime("2026-11-01", NOW)).toBe(Date.parse("2026-11-01T00:00:00Z"));
    expect(parseTime("2026-11-01T10:00:00+01:00", NOW)).toBe(Date.parse("2026-11-01T09:00:00Z"));
    expect(parseTime("yesterday", NOW)).toBeUndefined();
  });

  it("names what is wrong with the filters before any call", () => {
    expect(filterProblems({ namespace: "Team A", owner: "", selector: "", since: "soon", until: "" }, NOW)).toEqual([
      'Namespace "Team A" is not a namespace name.',
      'From "soon" is not a time: give a date (2026-06-01), a duration before now (24h, 7d) or RFC 3339.',
    ]);
    expect(filterProblems({ namespace: "", owner: "", selector: "", since: "2026-11-02", until: "2026-11-01" }, NOW)).toEqual(["The range ends before it starts."]);
    expect(filterProblems({ namespace: "team-a", owner: "", selector: "", since: "7d", until: "" }, NOW)).toEqual([]);
  });

  it("charts by hour up to 7 days and by day beyond", () => {
    const f = { namespace: "", owner: "", selector: "", since: "", until: "" };
    expect(stepFor(f, NOW)).toBe("hour");
    expect(stepFor({ ...f, since: "7d" }, NOW)).toBe("hour");
    expect(stepFor({ ...f, since: "90d" }, NOW)).toBe("day");
  });

  it("reads only the sort columns a page knows", () => {
    const cols = ["name", "owner"] as const;
    expect(readSort(new URLSearchParams("sort=owner&order=desc"), cols, "name", "asc")).toEqual({ sort: "owner", order: "desc" });
    expect(readSort(new URLSearchParams("sort=__proto__&order=sideways"), cols, "name", "asc")).toEqual({ sort: "name", order: "asc" });
  });
});

describe("formatting", () => {
  it("writes counts, times, latencies and labels", () => {
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatDateTime(Date.parse("2026-03-04T05:06:07Z"))).toBe("2026-03-04 05:06 UTC");
    expect(formatDateTime(undefined)).toBe("—");
    expect(formatMicros(850)).toBe("850 µs");
    expect(formatMicros(1234)).toBe("1.2 ms");
    expect(formatMicros(45_000)).toBe("45 ms");
    expect(formatMicros(2_500_000)).toBe("2.50 s");
    expect(formatMicros(undefined)).toBe("—");
    expect(formatLabels({ tier: "paid", app: "shop" })).toEqual(["app=shop", "tier=paid"]);
  });

  it("says how long ago or ahead", () => {
    expect(formatRelative(NOW - 3 * 3_600_000 - 5, NOW)).toBe("3 h ago");
    expect(formatRelative(NOW + 12 * 86_400_000, NOW)).toBe("in 12 d");
    expect(formatRelative(NOW - 20_000, NOW)).toBe("just now");
    expect(formatRelative(undefined, NOW)).toBe("never");
  });
});

describe("CSV", () => {
  it("quotes what needs quoting (RFC 4180)", () => {
    expect(toCsv([["a", 'say "hi"', "x,y", "line\nbreak", 3, undefined]])).toBe('a,"say ""hi""","x,y","line\nbreak",3,\r\n');
  });

  it("defuses cells a spreadsheet would run as a formula", () => {
    for (const evil of ["=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]) expect(csvCell(evil).replace(/^"/, "").startsWith("'")).toBe(true);
    expect(csvCell("ops@example.com")).toBe("ops@example.com");
  });

  it("writes the review as one row per finding", () => {
    const k = { namespace: "team-a", name: "k1", owner: "=cmd|' /C calc'!A0" };
    const csv = reviewCsv({
      generatedAt: "2026-12-01T15:00:00Z",
      source: "cluster",
      notChecked: [],
      options: { olderThanDays: 90, expiringWithinDays: 14, ownerLabel: "", scopeWindowDays: 30 },
      keys: 1,
      unused90: [{ ...k, idleDays: 120 }],
      unused30: [],
      unusedScopes: [{ ...k, granted: ["a", "b"], unused: ["b"], unknownRules: [] }],
      neverRotated: [{ ...k, since: "2026-01-01T00:00:00Z", ageDays: 334, rotation: "none", external: false }],
      olderThan: [],
      expiringSoon: [{ ...k, expiresAt: "2026-12-05T00:00:00Z", daysLeft: 4 }],
      withoutOwner: [{ ...k, labels: { tier: "free" } }],
    });
    expect(csv.split("\r\n")).toEqual([
      "finding,namespace,name,owner,detail",
      "unused 90 days,team-a,k1,'=cmd|' /C calc'!A0,last used never; idle 120 days",
      "unused scopes,team-a,k1,'=cmd|' /C calc'!A0,never used: b; granted: a b",
      "never rotated,team-a,k1,'=cmd|' /C calc'!A0,key material since 2026-01-01T00:00:00Z (334 days); rotation none",
      "expiring,team-a,k1,'=cmd|' /C calc'!A0,expires 2026-12-05T00:00:00Z (4 days left)",
      "without owner label,team-a,k1,'=cmd|' /C calc'!A0,tier=free",
      "",
    ]);
  });
});

describe("sorting", () => {
  const rows = [{ n: "b", v: 2 }, { n: "a10", v: undefined }, { n: "a2", v: 10 }, { n: "c", v: 2 }];
  it("sorts numbers by value and text naturally, missing values last either way, ties stable", () => {
    expect(sortRows(rows, (r) => r.v, "asc").map((r) => r.n)).toEqual(["b", "c", "a2", "a10"]);
    expect(sortRows(rows, (r) => r.v, "desc").map((r) => r.n)).toEqual(["a2", "b", "c", "a10"]);
    expect(sortRows(rows, (r) => r.n, "asc").map((r) => r.n)).toEqual(["a2", "a10", "b", "c"]);
  });
  it("toggles the order on the sorted column and starts another at its first order", () => {
    expect(nextOrder("name", "asc", "name", "asc")).toBe("desc");
    expect(nextOrder("name", "desc", "name", "asc")).toBe("asc");
    expect(nextOrder("name", "asc", "requests24h", "desc")).toBe("desc");
  });
});

describe("windowing", () => {
  it("keeps the rows in view and an overscan either side", () => {
    expect(visibleRange({ scrollTop: 0, viewport: 330, rowHeight: 33, total: 10_000, overscan: 5 })).toEqual({ start: 0, end: 16 });
    expect(visibleRange({ scrollTop: 33 * 5000, viewport: 330, rowHeight: 33, total: 10_000, overscan: 5 })).toEqual({ start: 4995, end: 5016 });
    expect(visibleRange({ scrollTop: 33 * 20_000, viewport: 330, rowHeight: 33, total: 10_000, overscan: 5 })).toEqual({ start: 9999, end: 10_000 });
    expect(visibleRange({ scrollTop: 0, viewport: 330, rowHeight: 33, total: 0 })).toEqual({ start: 0, end: 0 });
  });
});

describe("palette", () => {
  const css = readFileSync(join(import.meta.dirname, "..", "console.css"), "utf8");
  const vars = new Map([...css.matchAll(/(--[a-z-]+):\s*(#[0-9a-f]{6})\s*;/gi)].map((m) => [m[1]!, m[2]!]));
  const colour = (name: string): string => {
    const c = vars.get(name);
    if (c === undefined) throw new Error(`console.css defines no ${name}`);
    return c;
  };

  it("gives text at least 4.5:1 against its background (WCAG AA)", () => {
    for (const [fg, bg] of TEXT_PAIRS) expect(contrastRatio(colour(fg), colour(bg)), `${fg} on ${bg}`).toBeGreaterThanOrEqual(4.5);
    expect(contrastRatio(CHART_TEXT, CHART_BG)).toBeGreaterThanOrEqual(4.5);
    expect(CHART_BG).toBe(colour("--bg"));
    expect(CHART_TEXT).toBe(colour("--muted"));
  });

  it("gives controls, the focus ring and chart lines at least 3:1 (WCAG 1.4.11)", () => {
    for (const [fg, bg] of UI_PAIRS) expect(contrastRatio(colour(fg), colour(bg)), `${fg} on ${bg}`).toBeGreaterThanOrEqual(3);
    for (const [name, c] of Object.entries(SERIES)) expect(contrastRatio(c, CHART_BG), name).toBeGreaterThanOrEqual(3);
    expect(CHART_GRID).toBe(colour("--border"));
  });

  it("computes the WCAG ratio", () => {
    expect(contrastRatio("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrastRatio("#777777", "#ffffff")).toBeCloseTo(4.48, 2);
    expect(() => contrastRatio("red", "#ffffff")).toThrow(/not a #rrggbb/);
  });
});

describe("polling", () => {
  function fakeDoc() {
    const listeners = new Set<() => void>();
    return {
      visibilityState: "visible" as DocumentVisibilityState,
      addEventListener: (_t: string, fn: () => void) => listeners.add(fn),
      removeEventListener: (_t: string, fn: () => void) => listeners.delete(fn),
      fire(state: DocumentVisibilityState) {
        this.visibilityState = state;
        for (const fn of listeners) fn();
      },
    };
  }

  it("polls every interval, pauses while hidden and runs at once when shown", async () => {
    vi.useFakeTimers();
    try {
      const doc = fakeDoc();
      let runs = 0;
      const poller = new Poller({ intervalMs: 5000, doc: doc as unknown as Document, run: () => { runs++; return Promise.resolve(); } });
      poller.start();
      await vi.advanceTimersByTimeAsync(0);
      expect(runs).toBe(1);
      await vi.advanceTimersByTimeAsync(5000);
      expect(runs).toBe(2);
      doc.fire("hidden");
      expect(poller.scheduled).toBe(false);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(runs).toBe(2);
      doc.fire("visible");
      await vi.advanceTimersByTimeAsync(0);
      expect(runs).toBe(3);
      await vi.advanceTimersByTimeAsync(5000);
      expect(runs).toBe(4);
      poller.stop();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(runs).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it("waits for a slow round before the next, and goes on after a failed one", async () => {
    vi.useFakeTimers();
    try {
      const doc = fakeDoc();
      let runs = 0;
      const poller = new Poller({
        intervalMs: 1000,
        doc: doc as unknown as Document,
        run: async () => {
          runs++;
          await new Promise((ok) => setTimeout(ok, 3000));
          if (runs === 1) throw new Error("503");
        },
      });
      poller.start();
      await vi.advanceTimersByTimeAsync(2999);
      expect(runs).toBe(1);
      await vi.advanceTimersByTimeAsync(1001);
      expect(runs).toBe(2);
      poller.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("runs once and never polls with a zero interval", async () => {
    vi.useFakeTimers();
    try {
      let runs = 0;
      const poller = new Poller({ intervalMs: 0, doc: fakeDoc() as unknown as Document, run: () => { runs++; return Promise.resolve(); } });
      poller.start();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(runs).toBe(1);
      expect(poller.scheduled).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("conditional requests to the usage API", () => {
  const envelope = (names: string[]) => ({ view: "inventory", namespaces: ["team-a"], total: names.length, items: names.map((name) => ({ name })) });

  /** getView against scripted answers; the headers of each request it sent. */
  async function withAnswers(answers: Response[], fn: (get: () => ReturnType<typeof getView>, sent: Record<string, string>[], held: HeldAnswers) => Promise<void>): Promise<void> {
    vi.stubGlobal("document", { querySelector: () => null, baseURI: "http://127.0.0.1:9/" });
    try {
      const held = new HeldAnswers(2);
      const sent: Record<string, string>[] = [];
      const fake = (_url: URL | RequestInfo, init?: RequestInit): Promise<Response> => {
        sent.push({ ...(init?.headers as Record<string, string>) });
        const next = answers.shift();
        return next ? Promise.resolve(next) : Promise.reject(new Error("no more answers"));
      };
      await fn(() => getView("inventory", new URLSearchParams({ namespace: "team-a" }), undefined, { fetch: fake, held }), sent, held);
    } finally {
      vi.unstubAllGlobals();
    }
  }

  it("asks again with the ETag it holds and gives back the same answer on 304; a new answer replaces it", async () => {
    const json = (body: unknown, etag: string) => new Response(JSON.stringify(body), { status: 200, headers: { etag } });
    await withAnswers([json(envelope(["a", "b"]), '"one"'), new Response(null, { status: 304, headers: { etag: '"one"' } }), json(envelope(["a"]), '"two"'), new Response(null, { status: 304 })], async (get, sent) => {
      const first = await get();
      expect(sent[0]).not.toHaveProperty("if-none-match");
      const second = await get();
      expect(sent[1]).toMatchObject({ "if-none-match": '"one"' });
      // The very object: the keys page skips rebuilding what depends on it.
      expect(second).toBe(first);
      const third = await get();
      expect(third.items).toEqual([{ name: "a" }]);
      await get();
      expect(sent[3]).toMatchObject({ "if-none-match": '"two"' });
    });
  });

  it("sends no If-None-Match for an answer without an ETag, and refuses a 304 it holds nothing for", async () => {
    await withAnswers([new Response(JSON.stringify(envelope(["a"])), { status: 200 }), new Response(null, { status: 304 })], async (get, sent, held) => {
      await get();
      expect(held.size).toBe(0);
      await expect(get()).rejects.toMatchObject({ name: "ApiError", status: 304 });
      expect(sent[1]).not.toHaveProperty("if-none-match");
    });
  });

  it("holds the newest URLs only", () => {
    const held = new HeldAnswers(2);
    for (const u of ["a", "b", "c"]) held.set(u, `"${u}"`, { view: "v", namespaces: "all" });
    expect([held.get("a"), held.get("b")?.etag, held.get("c")?.etag]).toEqual([undefined, '"b"', '"c"']);
  });
});
