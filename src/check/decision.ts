// The check vocabulary shared by the data plane and usage: what one request
// brings to the check (CheckInput), what the check answers (Decision, with a
// reason from reasons.ts), and the client address the check judges.
import type { KeyEntry } from "../index/keys.ts";
import type { LimitVerdict } from "../limits/limiter.ts";
import type { CompiledRule } from "../policy/policy.ts";
import type { PathProblem } from "./paths.ts";
import { REASONS, type Reason } from "./reasons.ts";

/** Reads one request header by its lowercase name. */
export type HeaderLookup = (lowercaseName: string) => string | undefined;

export interface CheckInput {
  readonly method: string | undefined;
  /** :authority / Host, possibly with a port. */
  readonly host: string | undefined;
  /** Path with query string, as sent. */
  readonly path: string | undefined;
  readonly header: HeaderLookup;
  /** The address of the peer of the proxy that calls keyward. */
  readonly peerAddress: string | undefined;
  /** X-Forwarded-For as the proxy that calls keyward received it (without the peer it saw). */
  readonly forwardedFor: string | undefined;
}

export interface Decision {
  readonly reason: Reason;
  readonly status: number;
  readonly entry: KeyEntry | undefined;
  readonly rule: CompiledRule | undefined;
  readonly limit: LimitVerdict | undefined;
  readonly removeHeaders: readonly string[];
  readonly removeQueryParams: readonly string[];
  /** Why the path was refused (reason path_not_normalized). */
  readonly pathProblem?: PathProblem;
}

const EMPTY: readonly string[] = [];

export function deny(reason: Reason, entry?: KeyEntry, rule?: CompiledRule, limit?: LimitVerdict): Decision {
  return { reason, status: REASONS[reason].status, entry, rule, limit, removeHeaders: EMPTY, removeQueryParams: EMPTY };
}

/**
 * The method in upper case, as policies match it and usage records it: itself when it has no
 * lower-case ASCII letter (nearly every request's), without a call into the runtime.
 */
export function upperMethod(method: string): string;
export function upperMethod(method: string | undefined): string | undefined;
export function upperMethod(method: string | undefined): string | undefined {
  if (method === undefined) return undefined;
  for (let i = 0; i < method.length; i++) {
    const c = method.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || c >= 0x80) return method.toUpperCase();
  }
  return method;
}

/**
 * The client address: with 0 trusted hops the peer itself, else the entry that
 * many places from the right of X-Forwarded-For (the peer is the hop before
 * the trusted proxies). undefined when the header is too short.
 */
export function clientAddress(peer: string | undefined, xff: string | undefined, trustedHops: number): string | undefined {
  if (trustedHops <= 0) return peer;
  if (!xff) return undefined;
  const parts = xff.split(",");
  const idx = parts.length - trustedHops;
  if (idx < 0) return undefined;
  const v = parts[idx]?.trim();
  return v === "" ? undefined : v;
}
