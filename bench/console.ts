// The console in headless Chromium: how soon each page is interactive, and what its polling
// costs. The keys page over 10,000 keys and one key's page over 90 days of daily points, each
// served by keyward's own page server (src/console/server.ts) with the usage API's views
// answered from generated data (test/support/console-fixture.ts), so the figures are the
// browser's: parse, fetch, render, and the answer's size.
//
//   node bench/console.ts [--keys 10000] [--days 90] [--runs 5]
//
// Each run opens a fresh page (no cache) and takes, from the navigation's start (the page's
// performance.timeOrigin): `loaded`, when the first round of API calls is drawn; `interactive`,
// when the frame after it has been painted and a task queued then has run (the main thread is
// free for input); `input`, from a click on a sort header until the re-sorted table is painted.
// Also the main thread's task time until then (Chromium's TaskDuration). Medians and worst of
// the runs ("median (worst)" in the table); JSON on stdout.
import { parseArgs } from "node:util";
import type { Page } from "puppeteer-core";
import { inPage, launchBrowser, visit } from "../test/support/browser.ts";
import { fixtureData, startConsoleFixture } from "../test/support/console-fixture.ts";

export interface ConsolePageResult {
  page: string;
  path: string;
  runs: number;
  loadedMs: { median: number; max: number };
  interactiveMs: { median: number; max: number };
  /** The page's main-thread work (tasks) until interactive, ms: less sensitive to a busy machine than wall time. */
  mainThreadMs: { median: number; max: number };
  /** Click on a sort header to the re-sorted table painted (keys page only). */
  inputMs?: { median: number; max: number };
  /** API calls of one poll round, and the bytes of their answers. */
  pollCalls: number;
  pollKiB: number;
}

export interface ConsoleBenchResult {
  keys: number;
  days: number;
  budgetMs: number;
  pages: ConsolePageResult[];
}

export const BUDGET_MS = 1500;

const stats = (xs: number[]): { median: number; max: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: Math.round(s[Math.floor(s.length / 2)] ?? NaN), max: Math.round(s.at(-1) ?? NaN) };
};

/** From the navigation's start: drawn, then the next frame painted and a task after it run. */
async function measure(page: Page, url: string): Promise<{ loaded: number; interactive: number; mainThread: number }> {
  await page.setCacheEnabled(false);
  await visit(page, url);
  const t = await inPage<{ loaded: number; interactive: number }>(
    page,
    `new Promise((done) => { const loaded = performance.now(); requestAnimationFrame(() => setTimeout(() => done({ loaded, interactive: performance.now() }), 0)); })`,
  );
  return { ...t, mainThread: ((await page.metrics()).TaskDuration ?? NaN) * 1000 };
}

/** A click on the requests header until the table is re-sorted and painted. */
function sortInput(page: Page): Promise<number> {
  return inPage(
    page,
    `new Promise((done) => {
      const t0 = performance.now();
      document.querySelector('button[data-sort="requests24h"]').click();
      requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
    })`,
  );
}

export async function runConsoleBench(o: { keys: number; days: number; runs: number }, log: (s: string) => void = () => {}): Promise<ConsoleBenchResult> {
  const fx = await startConsoleFixture(fixtureData(o.keys, o.days));
  const browser = await launchBrowser();
  try {
    const pages: ConsolePageResult[] = [];
    const targets = [
      { page: `Keys, ${o.keys.toLocaleString("en-US")} keys`, path: "?refresh=0", sort: true },
      { page: `One key, ${String(o.days)} days`, path: `?view=key&key=team-1/key-00001&since=${String(o.days)}d&refresh=0`, sort: false },
    ];
    for (const t of targets) {
      const loaded: number[] = [];
      const interactive: number[] = [];
      const input: number[] = [];
      const mainThread: number[] = [];
      let pollCalls = 0;
      let pollBytes = 0;
      for (let run = 0; run < o.runs; run++) {
        const page = await browser.newPage();
        await page.setViewport({ width: 1280, height: 900 });
        let bytes = 0;
        let calls = 0;
        page.on("response", (r) => {
          if (!r.url().includes("/api/v1/")) return;
          calls++;
          bytes += Number(r.headers()["content-length"] ?? 0);
        });
        const m = await measure(page, `${fx.url}${t.path}`);
        loaded.push(m.loaded);
        interactive.push(m.interactive);
        mainThread.push(m.mainThread);
        if (t.sort) input.push(await sortInput(page));
        pollCalls = calls;
        pollBytes = bytes;
        await page.close();
      }
      const r: ConsolePageResult = {
        page: t.page,
        path: t.path,
        runs: o.runs,
        loadedMs: stats(loaded),
        interactiveMs: stats(interactive),
        mainThreadMs: stats(mainThread),
        ...(input.length ? { inputMs: stats(input) } : {}),
        pollCalls,
        pollKiB: Math.round(pollBytes / 1024),
      };
      log(`${r.page}: interactive median ${String(r.interactiveMs.median)} ms, worst ${String(r.interactiveMs.max)} ms`);
      pages.push(r);
    }
    return { keys: o.keys, days: o.days, budgetMs: BUDGET_MS, pages };
  } finally {
    await browser.close();
    await fx.close();
  }
}

/** The section's table for docs/benchmarks.md and bench/results/latest.md. */
export function consoleTable(r: ConsoleBenchResult): string[] {
  const cell = (s: { median: number; max: number } | undefined): string => (s ? `${String(s.median)} (${String(s.max)})` : "–");
  return [
    `| page | loaded, ms | interactive, ms | main-thread work, ms | sort click to paint, ms | one poll: calls, KiB | interactive within ${String(r.budgetMs)} ms (median) |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ...r.pages.map((p) => `| ${p.page} | ${cell(p.loadedMs)} | ${cell(p.interactiveMs)} | ${cell(p.mainThreadMs)} | ${cell(p.inputMs)} | ${String(p.pollCalls)}, ${String(p.pollKiB)} | ${p.interactiveMs.median <= r.budgetMs ? "yes" : "no"} |`),
  ];
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keys: { type: "string", default: "10000" }, days: { type: "string", default: "90" }, runs: { type: "string", default: "5" } } });
  const r = await runConsoleBench({ keys: Number(values.keys), days: Number(values.days), runs: Number(values.runs) }, (s) => process.stderr.write(`${s}\n`));
  process.stderr.write(`${consoleTable(r).join("\n")}\n`);
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
}
