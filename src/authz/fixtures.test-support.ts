// Requests as the fronts hand them to the Checker, for the authz unit tests.
import type { CheckInput } from "../check/decision.ts";

/** A GET of orders.example.com/v1/orders/1 with these headers, as the fronts hand it to the Checker. */
export function checkInput(headers: Record<string, string>, over: Partial<CheckInput> = {}): CheckInput {
  return {
    method: "GET",
    host: "orders.example.com",
    path: "/v1/orders/1",
    header: (n) => headers[n],
    peerAddress: undefined,
    forwardedFor: undefined,
    ...over,
  };
}
