// Finds the API key in a request, in the places a policy names: headers,
// `Authorization: Bearer`, query parameters. Two different keys in one request
// are refused; the same key in two places is one key.
import type { HeaderLookup } from "../check/decision.ts";
import type { CompiledCredentials } from "../policy/policy.ts";

export type Found =
  | { kind: "none" }
  | { kind: "conflict" }
  | { kind: "key"; key: string; headers: readonly string[]; queryParams: readonly string[] };

const NONE: Found = { kind: "none" };
const CONFLICT: Found = { kind: "conflict" };

/** The key held so far and one more place's value: the key, or null for two different keys. */
function offer(held: string | undefined, value: string): string | null {
  return held === undefined || held === value ? value : null;
}

export function findKey(cred: CompiledCredentials, header: HeaderLookup, query: string | undefined): Found {
  let key: string | undefined;
  let headers: string[] | undefined;
  let params: string[] | undefined;
  for (const name of cred.headers) {
    const v = header(name);
    if (v === undefined) continue;
    const t = v.trim();
    if (t === "") continue;
    const k = offer(key, t);
    if (k === null) return CONFLICT;
    key = k;
    (headers ??= []).push(name);
  }
  if (cred.bearer) {
    const v = header("authorization");
    if (v !== undefined) {
      const t = v.trim();
      if (t.length > 7 && t.slice(0, 7).toLowerCase() === "bearer ") {
        const k = offer(key, t.slice(7).trim());
        if (k === null) return CONFLICT;
        key = k;
        (headers ??= []).push("authorization");
      }
    }
  }
  if (cred.queryParams.length > 0 && query) {
    for (const part of query.split("&")) {
      const eq = part.indexOf("=");
      const name = queryParamName(part);
      if (name === undefined || !cred.queryParams.includes(name)) continue;
      const value = safeDecode(eq === -1 ? "" : part.slice(eq + 1));
      // A key that cannot be decoded is still a key: it will not be found.
      const v = (value ?? part).trim();
      if (v === "") continue;
      const k = offer(key, v);
      if (k === null) return CONFLICT;
      key = k;
      (params ??= []).push(name);
    }
  }
  if (key === undefined) return NONE;
  return { kind: "key", key, headers: headers ?? [], queryParams: params ? [...new Set(params)] : [] };
}

/** The decoded name of one `name=value` part of a query string; undefined if it cannot be decoded. */
export function queryParamName(part: string): string | undefined {
  const eq = part.indexOf("=");
  return safeDecode(eq === -1 ? part : part.slice(0, eq));
}

function safeDecode(s: string): string | undefined {
  if (!s.includes("%") && !s.includes("+")) return s;
  try {
    return decodeURIComponent(s.replaceAll("+", " "));
  } catch {
    return undefined;
  }
}
