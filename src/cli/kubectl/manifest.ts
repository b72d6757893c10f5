// The ApiKey that `kubectl keyward create` prints or applies, built from its flags.
// The apiserver validates the result against the CRD; here only the flags' own
// shapes (100/1m, 1000000/month, a time or a duration) are checked.
import { API_VERSION, type ApiKey, type ApiKeySpec, type Quota } from "../../api/types.ts";
import { parseDuration } from "../../util/duration.ts";
import { UsageError, type CreateFlags } from "./flags.ts";

const count = (text: string, what: string): number => {
  if (!/^[1-9]\d*$/.test(text)) throw new UsageError(`${what} "${text}" is not a positive whole number`, "create");
  return Number(text);
};

/** --expires: an RFC 3339 time, a date (midnight UTC) or a Go duration from now; returned as RFC 3339 in UTC, whole seconds. */
export function expiryOf(text: string, now: number): string {
  const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) text = `${text}T00:00:00Z`;
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    const ms = Date.parse(text);
    if (Number.isNaN(ms) || !/(Z|[+-]\d{2}:\d{2})$/.test(text)) {
      throw new UsageError(`--expires "${text}" is not an RFC 3339 time with a zone, like 2027-06-30T00:00:00Z`, "create");
    }
    return iso(ms);
  }
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new UsageError(`--expires "${text}" is neither a time (2027-06-30T00:00:00Z), a date (2027-06-30) nor a duration (720h)`, "create", { cause: err });
  }
  return iso(now + ms);
}

export function buildApiKey(name: string, namespace: string | undefined, f: CreateFlags, now: number): ApiKey {
  if (!f.owner) throw new UsageError("create needs --owner (the customer, team or integration the key belongs to)", "create");
  const spec: ApiKeySpec = { owner: f.owner };
  if (f.description !== undefined) spec.description = f.description;
  if (f.scopes !== undefined) spec.scopes = f.scopes.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (f.prefix !== undefined) spec.prefix = f.prefix;
  if (f.expires !== undefined) spec.expiresAt = expiryOf(f.expires, now);
  if (f.burst !== undefined && f.rate === undefined) throw new UsageError("--burst goes with --rate", "create");
  if (f.rate !== undefined) {
    const m = /^(\w+)\/(\S+)$/.exec(f.rate);
    if (!m) throw new UsageError(`--rate "${f.rate}" is not REQUESTS/PER, like 100/1m`, "create");
    const per = m[2] as string;
    try {
      parseDuration(per);
    } catch (err) {
      throw new UsageError(`--rate "${f.rate}": "${per}" is not a duration, like 1s, 1m or 1h`, "create", { cause: err });
    }
    spec.limits = { rate: { requests: count(m[1] as string, "--rate requests"), per, ...(f.burst !== undefined ? { burst: count(f.burst, "--burst") } : {}) } };
  }
  if (f.quota !== undefined) {
    const m = /^(\w+)\/(day|month)$/.exec(f.quota);
    if (!m) throw new UsageError(`--quota "${f.quota}" is not REQUESTS/day or REQUESTS/month, like 1000000/month`, "create");
    spec.limits = { ...spec.limits, quota: { requests: count(m[1] as string, "--quota requests"), per: m[2] as Quota["per"] } };
  }
  const labels: Record<string, string> = {};
  for (const l of f.label ?? []) {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label "${l}" is not KEY=VALUE`, "create");
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  return {
    apiVersion: API_VERSION,
    kind: "ApiKey",
    metadata: { name, ...(namespace !== undefined ? { namespace } : {}), ...(Object.keys(labels).length > 0 ? { labels } : {}) } as ApiKey["metadata"],
    spec,
  };
}
