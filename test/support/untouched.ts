// Files a test run must leave alone: keyward's analytics store defaults to a SQLite file in the
// working directory (--analytics-sqlite-path keyward-analytics.sqlite), the repository's root for
// every process the suites start. A process that writes it shares one store with every other run.
import { statSync } from "node:fs";
import { join } from "node:path";

/** The default analytics store in `dir`, with the journal files SQLite keeps beside it. */
export function defaultAnalyticsFiles(dir: string): string[] {
  const file = join(dir, "keyward-analytics.sqlite");
  return [file, `${file}-wal`, `${file}-shm`, `${file}-journal`];
}

function stateOf(path: string): string {
  const s = statSync(path, { throwIfNoEntry: false });
  return s ? `${s.ino}:${s.size}:${s.mtimeMs}` : "absent";
}

/**
 * Notes the state of `paths` now (absent, or inode, size and modification time); the function
 * returned names each of them created or changed since, in the order given.
 */
export function watchUntouched(paths: readonly string[]): () => string[] {
  const before = new Map(paths.map((p) => [p, stateOf(p)]));
  return () => paths.filter((p) => {
    const now = stateOf(p);
    return now !== "absent" && now !== before.get(p);
  });
}
