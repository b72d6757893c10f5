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

export interface Decided {
  decision: Decision;
  input: CheckInput | undefined;
}

/**
 * Runs one check, failing closed. The answer is at once, or a Promise when the check
 * waits for the limits store (redis); the Promise never rejects.
 */
export function decide<R>(front: FrontOptions, request: R, toInput: (r: R) => CheckInput): Decided | Promise<Decided> {
  let input: CheckInput | undefined;
  const failed = (err: unknown): Decided => {
    front.onError(err);
    return { decision: deny("internal_error"), input };
  };
  try {
    if (!front.ready()) return { decision: deny("not_ready"), input };
    if (front.indexStale?.()) return { decision: deny("index_stale"), input };
    input = toInput(request);
    const d = front.checker.check(input);
    if (d instanceof Promise) return d.then((decision) => ({ decision, input }), failed);
    return { decision: d, input };
  } catch (err) {
    return failed(err);
  }
}
