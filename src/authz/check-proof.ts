// The proof an allowed check adds to its metadata for the access log service
// (src/accesslog/proof.ts, ADR 0053): only for a request with a usable request
// id, the same one the access log's row will carry (src/analytics/rows.ts).
import { proofOf } from "../accesslog/proof.ts";
import type { Decision } from "../check/decision.ts";
import { requestIdOf } from "../check/event.ts";
import type { CheckProof } from "./check-messages.ts";

export function checkProof(key: Buffer, now: () => number): CheckProof {
  return (d: Decision, input) => {
    if (d.status !== 200 || !d.entry) return undefined;
    const requestId = requestIdOf(input, d);
    if (requestId === undefined) return undefined;
    return proofOf(key, { requestId, keyId: d.entry.id, uid: d.entry.record.uid }, now());
  };
}
