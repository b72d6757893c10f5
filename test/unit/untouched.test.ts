// The integration run's check that its processes left the default analytics store alone
// (test/integration/global-setup.ts): a file created or written since the start is named.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { defaultAnalyticsFiles, watchUntouched } from "../support/untouched.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = (): string => {
  const d = mkdtempSync(join(tmpdir(), "keyward-untouched-"));
  dirs.push(d);
  return d;
};

describe("watchUntouched", () => {
  it("names the default store and its journal files once created", () => {
    const dir = scratch();
    const files = defaultAnalyticsFiles(dir);
    const touched = watchUntouched(files);
    expect(touched()).toEqual([]);
    writeFileSync(join(dir, "keyward-analytics.sqlite"), "");
    writeFileSync(join(dir, "keyward-analytics.sqlite-wal"), "");
    expect(touched()).toEqual([join(dir, "keyward-analytics.sqlite"), join(dir, "keyward-analytics.sqlite-wal")]);
  });

  it("passes a file that was there before and was left alone, and names it once written", () => {
    const dir = scratch();
    const file = join(dir, "keyward-analytics.sqlite");
    writeFileSync(file, "rows of an earlier run");
    const touched = watchUntouched([file]);
    expect(touched()).toEqual([]);
    appendFileSync(file, ", and one more");
    expect(touched()).toEqual([file]);
  });

  it("passes a file removed meanwhile", () => {
    const dir = scratch();
    const file = join(dir, "keyward-analytics.sqlite");
    writeFileSync(file, "");
    const touched = watchUntouched([file]);
    rmSync(file);
    expect(touched()).toEqual([]);
  });
});
