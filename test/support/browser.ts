// Headless Chromium (Debian's, installed by scripts/install-system-deps.sh) driven by
// puppeteer-core, for the console's browser suite and bench: pages that record every console
// error, uncaught exception, failed request and HTTP error they meet.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

const root = resolve(import.meta.dirname, "..", "..");
/** Where the suite leaves its screenshots (gitignored). */
export const ARTIFACTS = join(root, "test-results", "console");
export const CHROMIUM = process.env.KEYWARD_CHROMIUM ?? "/usr/bin/chromium";

export function launchBrowser(): Promise<Browser> {
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}

export interface WatchedPage {
  page: Page;
  /** Console errors and warnings, page errors, failed requests and HTTP errors, as lines. */
  problems: string[];
  /** Every request URL the page made. */
  requests: string[];
}

export async function openPage(browser: Browser, width = 1280, height = 900): Promise<WatchedPage> {
  const page = await browser.newPage();
  await page.setViewport({ width, height });
  const problems: string[] = [];
  const requests: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warn") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
  page.on("request", (r) => requests.push(r.url()));
  page.on("requestfailed", (r) => {
    // a navigation away aborts the page's polls in flight: not a failure of the page
    if (r.failure()?.errorText !== "net::ERR_ABORTED") problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return { page, problems, requests };
}

/** Navigates and waits for the view's first round of API calls to be drawn. */
export async function visit(page: Page, url: string): Promise<void> {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("body[data-loaded]", { timeout: 30_000 });
}

/** A screenshot (the whole page by default) in ARTIFACTS; its path. */
export async function screenshot(page: Page, name: string, fullPage = true): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path: `${string}.png` = `${join(ARTIFACTS, name)}.png`;
  await page.screenshot({ path, fullPage });
  return path;
}

// In-page reads, written as expressions over the page's DOM (the suite's own TypeScript has no DOM
// library): each takes a CSS selector, JSON-quoted into the expression.
const q = (selector: string): string => JSON.stringify(selector);

/** Evaluates `expression` in the page; its value, as the caller says it is. */
export async function inPage<T>(page: Page, expression: string): Promise<T> {
  return (await page.evaluate(expression)) as T;
}

/** The trimmed text of the first element matching `selector`; null when none does. */
export function text(page: Page, selector: string): Promise<string | null> {
  return inPage(page, `document.querySelector(${q(selector)})?.textContent?.trim() ?? null`);
}

/** The trimmed text of every element matching `selector`. */
export function texts(page: Page, selector: string): Promise<string[]> {
  return inPage(page, `[...document.querySelectorAll(${q(selector)})].map((e) => (e.textContent ?? "").trim())`);
}

/** An attribute of the first element matching `selector`; null when absent. */
export function attr(page: Page, selector: string, name: string): Promise<string | null> {
  return inPage(page, `document.querySelector(${q(selector)})?.getAttribute(${q(name)}) ?? null`);
}

/** An attribute of every element matching `selector`. */
export function attrs(page: Page, selector: string, name: string): Promise<(string | null)[]> {
  return inPage(page, `[...document.querySelectorAll(${q(selector)})].map((e) => e.getAttribute(${q(name)}))`);
}

export function count(page: Page, selector: string): Promise<number> {
  return inPage(page, `document.querySelectorAll(${q(selector)}).length`);
}

/** Whether the first element matching `selector` has the hidden attribute. */
export function isHidden(page: Page, selector: string): Promise<boolean> {
  return inPage(page, `document.querySelector(${q(selector)}).hidden === true`);
}

/** The text of every cell of the table (or tables) matching `selector`, row by row (spacer rows left out). */
export function tableText(page: Page, selector: string): Promise<string[][]> {
  return inPage(page, `[...document.querySelectorAll(${q(`${selector} tbody tr:not(.spacer)`)})].map((r) => [...r.querySelectorAll("th, td")].map((c) => (c.textContent ?? "").trim()))`);
}
