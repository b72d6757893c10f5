// @ts-check
// CSV (RFC 4180) for the access review's export. A cell that a spreadsheet would read as a
// formula (= + - @, tab or carriage return first) is written with a leading apostrophe, so an
// owner or label value chosen by a tenant cannot run in whoever opens the file.

/** @param {string | number | undefined} value */
export function csvCell(value) {
  let text = value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** @param {readonly (readonly (string | number | undefined)[])[]} rows */
export function toCsv(rows) {
  return rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

/**
 * @typedef {{ namespace: string, name: string, owner: string }} ReviewKey
 * @typedef {ReviewKey & { lastUsedAt?: string, idleDays: number }} UnusedKey
 * @typedef {ReviewKey & { granted: string[], unused: string[], unknownRules: string[] }} UnusedScopes
 * @typedef {ReviewKey & { since: string, ageDays: number, lastRotatedAt?: string, rotation: string, external: boolean }} StaleKey
 * @typedef {ReviewKey & { expiresAt: string, daysLeft: number }} ExpiringKey
 * @typedef {object} Review
 * @property {string} generatedAt
 * @property {"cluster" | "store"} source
 * @property {string} [clusterUnavailable]
 * @property {string[]} notChecked
 * @property {{ olderThanDays: number, expiringWithinDays: number, ownerLabel: string, scopeWindowDays: number }} options
 * @property {number} keys
 * @property {UnusedKey[]} unused90
 * @property {UnusedKey[]} unused30
 * @property {UnusedScopes[]} unusedScopes
 * @property {StaleKey[]} neverRotated
 * @property {StaleKey[]} olderThan
 * @property {ExpiringKey[]} expiringSoon
 * @property {(ReviewKey & { labels: Record<string, string> })[]} withoutOwner
 */

export const REVIEW_CSV_HEADER = ["finding", "namespace", "name", "owner", "detail"];

/**
 * The review as one CSV table: a row per finding, with what was found in `detail`.
 * @param {Review} r
 */
export function reviewCsv(r) {
  /** @type {(string | number | undefined)[][]} */
  const rows = [REVIEW_CSV_HEADER];
  /** @param {string} finding @param {ReviewKey} k @param {string} detail */
  const add = (finding, k, detail) => rows.push([finding, k.namespace, k.name, k.owner, detail]);
  for (const k of r.unused90) add("unused 90 days", k, `last used ${k.lastUsedAt ?? "never"}; idle ${k.idleDays} days`);
  for (const k of r.unused30) add("unused 30 days", k, `last used ${k.lastUsedAt ?? "never"}; idle ${k.idleDays} days`);
  for (const k of r.unusedScopes) add("unused scopes", k, `never used: ${k.unused.join(" ")}; granted: ${k.granted.join(" ")}`);
  for (const k of r.neverRotated) add("never rotated", k, `key material since ${k.since} (${k.ageDays} days); rotation ${k.external ? "external" : k.rotation}`);
  for (const k of r.olderThan) add(`older than ${r.options.olderThanDays} days`, k, `key material since ${k.since} (${k.ageDays} days)`);
  for (const k of r.expiringSoon) add("expiring", k, `expires ${k.expiresAt} (${k.daysLeft} days left)`);
  for (const k of r.withoutOwner) add("without owner label", k, Object.entries(k.labels).map(([n, v]) => `${n}=${v}`).join(" "));
  return toCsv(rows);
}
