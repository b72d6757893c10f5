// The console's pages in headless Chromium against a stand-in for its API
// (test/support/console-fixture.ts), for what the real stack cannot be made to do on demand:
// 10,000 keys, answers of 401, 403 and 503, a hidden tab. Each view in the documented shape;
// the pages must render it, keep their state in the URL, work from the keyboard and never log an
// error, and ask again for an unchanged inventory with If-None-Match. The real stack (control
// plane, data plane, `keyward console`) is console.test.ts.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attr, attrs, count, inPage, isHidden, launchBrowser, openPage, screenshot, tableText, text, texts, visit, type WatchedPage } from "../support/browser.ts";
import { fixtureData, startConsoleFixture, type ConsoleFixture } from "../support/console-fixture.ts";
import { eventually } from "../support/k8s.ts";

let browser: Browser;
let fx: ConsoleFixture;
let w: WatchedPage;

beforeAll(async () => {
  fx = await startConsoleFixture(fixtureData(10_000, 90));
  browser = await launchBrowser();
  w = await openPage(browser);
});

afterAll(async () => {
  await browser.close();
  await fx.close();
});

const apiCalls = (view: string): string[] => fx.calls.filter((c) => c.startsWith(`${view}?`));

describe("console pages", () => {
  it("keeps only the rows in view of 10,000 keys in the DOM, and scrolls to the last", async () => {
    await visit(w.page, `${fx.url}?refresh=0`);
    expect(await text(w.page, "#summary")).toBe("10,000 keys, 200 with firing alerts.");
    expect(await attr(w.page, "table.windowed", "aria-rowcount")).toBe("10001");
    const rendered = await count(w.page, "table.windowed tbody tr:not(.spacer)");
    expect(rendered).toBeGreaterThan(10);
    expect(rendered).toBeLessThan(100);
    await inPage(w.page, `(() => { const s = document.querySelector(".scroller"); s.scrollTop = s.scrollHeight; })()`);
    const last = fx.data.keys.map((k) => `${k.namespace}/${k.name}`).sort().at(-1);
    await eventually(async () => ((await tableText(w.page, "table.windowed")).at(-1)?.[0] === last ? true : undefined), 5000, "the last row");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("sorts from the keyboard, puts the sort in the URL, and the back button restores it", async () => {
    await visit(w.page, `${fx.url}?refresh=0`);
    await w.page.focus('button[data-sort="requests24h"]');
    await w.page.keyboard.press("Enter");
    expect(new URL(w.page.url()).searchParams.get("sort")).toBe("requests24h");
    expect(new URL(w.page.url()).searchParams.get("order")).toBe("desc");
    expect(await inPage(w.page, `document.activeElement?.getAttribute("data-sort")`)).toBe("requests24h");
    expect(await text(w.page, 'th[aria-sort="descending"]')).toMatch(/^Requests \(24 h\)/);
    const max = Math.max(...fx.data.keys.map((k) => k.requests24h));
    expect((await tableText(w.page, "table.windowed"))[0]?.[6]).toBe(max.toLocaleString("en-US"));
    await w.page.keyboard.press("Enter");
    expect(new URL(w.page.url()).searchParams.get("order")).toBe("asc");
    await w.page.goBack();
    await eventually(async () => (await w.page.$('th[aria-sort="descending"] button[data-sort="requests24h"]')) ? true : undefined, 5000, "the sort before");
    await w.page.goBack();
    await eventually(async () => (await w.page.$('th[aria-sort="ascending"] button[data-sort="name"]')) ? true : undefined, 5000, "the first sort");
    expect((await tableText(w.page, "table.windowed"))[0]?.[0]).toBe("team-0/key-00000");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("filters through the form: the URL, the API calls, the rows and every link carry the filters", async () => {
    await visit(w.page, `${fx.url}?refresh=0`);
    await w.page.type("#f-namespace", "team-3");
    await w.page.type("#f-selector", "tier=free");
    await Promise.all([w.page.waitForNavigation(), w.page.click("form.filters button[type=submit]")]);
    await w.page.waitForSelector("body[data-loaded]");
    const url = new URL(w.page.url());
    expect(url.searchParams.get("namespace")).toBe("team-3");
    expect(url.searchParams.get("selector")).toBe("tier=free");
    expect(url.searchParams.has("owner")).toBe(false);
    expect(apiCalls("inventory").at(-1)).toBe("inventory?namespace=team-3&selector=tier%3Dfree");
    const expected = fx.data.keys.filter((k) => k.namespace === "team-3" && k.labels.tier === "free").length;
    expect(await text(w.page, "#summary")).toMatch(new RegExp(`^${expected.toLocaleString("en-US")} keys`));
    expect((await tableText(w.page, "table.windowed")).every((r) => r[0]?.startsWith("team-3/") && r[3]?.includes("tier=free"))).toBe(true);
    const navs = await attrs(w.page, "nav a", "href");
    expect(navs).toEqual(["./?namespace=team-3&selector=tier%3Dfree", "./?view=alerts&namespace=team-3&selector=tier%3Dfree", "./?view=review&namespace=team-3&selector=tier%3Dfree"]);
    const keyHref = await attr(w.page, "table.windowed tbody a", "href");
    expect(keyHref).toMatch(/^\.\/\?view=key&key=team-3%2Fkey-\d+&namespace=team-3&selector=tier%3Dfree$/);
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("shows a key's versions, charts with their figures as a table, endpoints, places, denials", async () => {
    await visit(w.page, `${fx.url}?view=key&key=team-1/key-00001&since=7d&refresh=0`);
    expect(await text(w.page, "h1")).toBe("Key team-1/key-00001");
    expect((await tableText(w.page, "#versions")).map((r) => r.slice(0, 2))).toEqual([["kid1", "active"], ["kid1old", "grace"], ["kid1older", "expired"]]);
    expect(await count(w.page, "figure canvas")).toBe(3);
    expect(await texts(w.page, "figcaption")).toEqual(["Requests by outcome", "Requests by upstream status class", "Latency"]);
    const outcomeRows = await tableText(w.page, "#chart-outcomes details");
    expect(outcomeRows.length).toBe(7 * 24 + 1);
    expect(await texts(w.page, "#chart-outcomes details thead th")).toEqual(["Time (UTC)", "allowed", "401", "403", "429"]);
    expect(apiCalls("timeline").at(-1)).toBe("timeline?key=team-1%2Fkey-00001&since=7d&step=hour");
    expect((await tableText(w.page, "#endpoints"))[0]).toEqual(["GET /orders", "1,000", "100", "100", "0", "200 µs"]);
    expect((await tableText(w.page, "#countries")).map((r) => r[0])).toEqual(["DE", "US", "private"]);
    expect((await tableText(w.page, "#denials"))[0]?.slice(1, 4)).toEqual(["403", "scope orders:admin missing", "DELETE /orders/7"]);
    await visit(w.page, `${fx.url}?view=key&key=team-1/key-00001&since=90d&refresh=0`);
    expect(apiCalls("timeline").at(-1)).toBe("timeline?key=team-1%2Fkey-00001&since=90d&step=day");
    expect((await tableText(w.page, "#chart-outcomes details")).length).toBeGreaterThanOrEqual(90);
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("turns 401, 403 and 503 into sentences, and recovers by itself at the next poll", async () => {
    for (const [status, message] of [
      [401, /^Not signed in: the usage API did not accept your credentials \(token expired\)/],
      [403, /^Not allowed: you may not get ApiKeys where this page reads \(forbidden\)/],
      [503, /^The usage API is unavailable for now \(store down\)\. The page retries by itself\./],
    ] as const) {
      fx.overrides.set("inventory", { status, body: { error: status === 401 ? "token expired" : status === 403 ? "forbidden" : "store down" } });
      await visit(w.page, `${fx.url}?refresh=1`);
      expect(await isHidden(w.page, "#error")).toBe(false);
      expect(await text(w.page, "#error")).toMatch(message);
    }
    fx.overrides.clear();
    await eventually(async () => ((await isHidden(w.page, "#error")) ? true : undefined), 10_000, "the banner to clear");
    expect(await text(w.page, "#summary")).toMatch(/^10,000 keys/);
    const errors = w.problems.splice(0);
    expect(errors.every((p) => /HTTP (401|403|503)|status of (401|403|503)/.test(p))).toBe(true);
  });

  it("refuses filters that are not valid before calling the API", async () => {
    const before = fx.calls.length;
    await visit(w.page, `${fx.url}?view=alerts&since=soon&refresh=0`);
    expect(await text(w.page, "#error")).toMatch(/^From "soon" is not a time/);
    expect(fx.calls.length).toBe(before);
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("polls every refresh, shows when it last did, and stops while the tab is hidden", async () => {
    await visit(w.page, `${fx.url}?view=alerts&refresh=1`);
    await eventually(() => (apiCalls("alerts").length >= 3 ? true : undefined), 10_000, "polls");
    expect(await text(w.page, "#updated")).toMatch(/^updated \d\d:\d\d:\d\d$/);
    const other = await browser.newPage();
    await other.bringToFront();
    expect(await inPage(w.page, "document.visibilityState")).toBe("hidden");
    const hiddenAt = apiCalls("alerts").length;
    // three refresh intervals pass hidden; the page's own clock says when
    const until = Date.now() + 3000;
    await w.page.waitForFunction(`Date.now() >= ${String(until)}`, { polling: 200, timeout: 10_000 });
    expect(apiCalls("alerts").length).toBeLessThanOrEqual(hiddenAt + 1);
    await other.close();
    await w.page.bringToFront();
    await eventually(() => (apiCalls("alerts").length >= hiddenAt + 2 ? true : undefined), 10_000, "polls again once shown");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("asks for an unchanged inventory with If-None-Match: 304s without a body, and the page still shows every key", async () => {
    const from = fx.answered.length;
    await visit(w.page, `${fx.url}?refresh=1`);
    await eventually(() => (fx.answered.slice(from).filter((a) => a === "inventory 304").length >= 2 ? true : undefined), 20_000, "two 304s");
    // The first answer of the visit is whole; the polls after it only confirm it.
    expect(fx.answered.slice(from).filter((a) => a.startsWith("inventory "))[0]).toBe("inventory 200");
    expect(await text(w.page, "#summary")).toBe("10,000 keys, 200 with firing alerts.");
    expect(await text(w.page, "#updated")).toMatch(/^updated \d\d:\d\d:\d\d$/);
    expect(await count(w.page, "table.windowed tbody tr:not(.spacer)")).toBeGreaterThan(10);
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("exports the review as CSV", async () => {
    await visit(w.page, `${fx.url}?view=review&refresh=0`);
    expect(await text(w.page, "#never-rotated-heading")).toBe("Never rotated (5)");
    const dir = mkdtempSync(join(tmpdir(), "keyward-console-csv-"));
    const cdp = await browser.target().createCDPSession();
    await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
    await w.page.click("#csv");
    const file = join(dir, "keyward-access-review.csv");
    const csv = await eventually(() => (existsSync(file) ? readFileSync(file, "utf8") : undefined), 10_000, "the CSV download");
    rmSync(dir, { recursive: true, force: true });
    expect(csv.split("\r\n")[0]).toBe("finding,namespace,name,owner,detail");
    expect(csv).toContain("never rotated,team-0,key-00000,owner-0@example.com,key material since 2026-01-01T00:00:00Z (334 days); rotation none");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("labels every control and gives the page its landmarks", async () => {
    for (const view of ["", "?view=key&key=team-1/key-00001", "?view=alerts", "?view=review"]) {
      await visit(w.page, `${fx.url}${view}${view ? "&" : "?"}refresh=0`);
      const unlabelled = await inPage(w.page, `[...document.querySelectorAll("input:not([type=hidden]), button, select")].filter((e) => !e.labels?.length && !e.textContent.trim() && !e.getAttribute("aria-label")).map((e) => e.outerHTML)`);
      expect(unlabelled).toEqual([]);
      expect(await count(w.page, "header, nav, main, form[role=search]")).toBe(4);
      expect(await count(w.page, "h1")).toBe(1);
    }
    await screenshot(w.page, "pages-review");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("writes owners and labels as text, never as markup", async () => {
    const k = fx.data.keys[1]!;
    const saved = { owner: k.owner, labels: k.labels };
    k.owner = `<img src=x onerror="window.pwned=1">`;
    k.labels = { "<b>tier</b>": `"><script>window.pwned=2</script>` };
    try {
      for (const view of [`?namespace=${k.namespace}&refresh=0`, `?view=key&key=${k.namespace}/${k.name}&refresh=0`, "?view=review&refresh=0"]) {
        await visit(w.page, `${fx.url}${view}`);
        expect(await count(w.page, "main img, main b, main script")).toBe(0);
        expect(await inPage(w.page, "document.body.innerText")).toContain(`<img src=x onerror="window.pwned=1">`);
        expect(await inPage(w.page, "window.pwned === undefined")).toBe(true);
      }
    } finally {
      Object.assign(k, saved);
    }
    expect(w.problems.splice(0)).toEqual([]);
  });
});
