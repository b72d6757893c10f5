// What the gRPC and HTTP front ends share: their options, and running one check
// so that a replica that is not ready answers 503 and anything that throws 500.
import type { CheckInput, Decision } from "../check/decision.ts";
import type { Checker } from "./check.ts";
import { deny } from "../check/decision.ts";
import type { TlsSource } from "../tls/source.ts";
import type { ResponseOptions } from "./response.ts";

export interface FrontOptions {
  address: string;
  checker: Checker;
  response: ResponseOptions;
  ready: () => boolean;
  /** True while the index is older than --max-index-staleness (staleness.ts): checks fail closed. */
  indexStale?: () => boolean;
  /** Called once per answered (or cancelled) check. */
  onDecision: (d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean) => void;
  onError: (err: unknown) => void;
  /** Serve TLS with this certificate (reloaded as it changes); cleartext without it. */
  tls?: TlsSource;
}

/** Runs one check, failing closed. */
export function decide<R>(o: FrontOptions, request: R, toInput: (r: R) => CheckInput): { decision: Decision; input: CheckInput | undefined } {
  let input: CheckInput | undefined;
  try {
    if (!o.ready()) return { decision: deny("not_ready"), input };
    if (o.indexStale?.()) return { decision: deny("index_stale"), input };
    input = toInput(request);
    return { decision: o.checker.check(input), input };
  } catch (err) {
    o.onError(err);
    return { decision: deny("internal_error"), input };
  }
}
