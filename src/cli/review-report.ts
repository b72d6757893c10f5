// The access review as markdown (for a ticket or a wiki page) or JSON.
import type { Review } from "../analytics/review.ts";

const cell = (s: string): string => s.replaceAll("|", "\\|").replaceAll("\n", " ");

function table(header: string[], rows: string[][]): string {
  if (!rows.length) return "None.\n";
  return [header, header.map(() => "---"), ...rows].map((r) => `| ${r.map(cell).join(" | ")} |`).join("\n") + "\n";
}

export function reviewMarkdown(r: Review): string {
  const o = r.options;
  const key = (k: { namespace: string; name: string }): string => `${k.namespace}/${k.name}`;
  const parts: string[] = [
    `# Access review, ${r.generatedAt}\n`,
    r.source === "cluster"
      ? `${r.keys} ApiKeys from the cluster, joined with the analytics store.\n`
      : `**The cluster could not be read (${r.clusterUnavailable ?? "unknown reason"}): this review uses the analytics store's key records only.** ${r.keys} keys on record that were not deleted.\n`,
  ];
  if (r.notChecked.length) parts.push(`Not checked:\n\n${r.notChecked.map((n) => `- ${n}`).join("\n")}\n`);
  const unused = (rows: Review["unused30"]) => table(["Key", "Owner", "Last used", "Idle days"], rows.map((k) => [key(k), k.owner, k.lastUsedAt ?? "never", String(k.idleDays)]));
  parts.push(`## Unused for 90 days or more\n\n${unused(r.unused90)}`);
  parts.push(`## Unused for 30 to 89 days\n\n${unused(r.unused30)}`);
  parts.push(
    `## Scopes granted but never used\n\nA scope counts as used when the key was allowed through a policy rule that requires it, in the last ${o.scopeWindowDays} days (the per-request retention).\n\n` +
      (r.source === "cluster" ? table(["Key", "Owner", "Granted", "Never used", "Rules no longer defined"], r.unusedScopes.map((k) => [key(k), k.owner, k.granted.join(", "), k.unused.join(", "), k.unknownRules.join(", ")])) : "Not checked: needs the cluster.\n"),
  );
  const stale = (rows: Review["olderThan"]) => table(["Key", "Owner", "Key material since", "Age (days)", "Last rotated", "Rotation"], rows.map((k) => [key(k), k.owner, k.since, String(k.ageDays), k.lastRotatedAt ?? "never", k.external ? "external (keyHash or existingSecret)" : k.rotation]));
  parts.push(`## Never rotated\n\n${r.source === "cluster" ? stale(r.neverRotated) : "Not checked: needs the cluster.\n"}`);
  parts.push(`## Key material older than ${o.olderThanDays} days\n\n${stale(r.olderThan)}`);
  parts.push(`## Expiring within ${o.expiringWithinDays} days, or expired\n\n${table(["Key", "Owner", "Expires", "Days left"], r.expiringSoon.map((k) => [key(k), k.owner, k.expiresAt, String(k.daysLeft)]))}`);
  parts.push(`## Without an owner label${o.ownerLabel ? ` (\`${o.ownerLabel}\`)` : ""}\n\n${table(["Key", "spec.owner", "Labels"], r.withoutOwner.map((k) => [key(k), k.owner, Object.entries(k.labels).map(([n, v]) => `${n}=${v}`).join(", ")]))}`);
  return parts.join("\n");
}

export function reviewJson(r: Review): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}
