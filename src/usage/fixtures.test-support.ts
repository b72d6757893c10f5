// Builders shared by the usage unit tests.
import type { CheckEvent, KeyRef } from "../check/event.ts";

export const KEY: KeyRef = { namespace: "shop", name: "acme", uid: "u1", keyId: "kw_AAAAAAAA", owner: "acme" };

/** An allowed check of KEY at `at` on GET /v1/orders, with `more` on top. */
export function checkEvent(at: number, more: Partial<CheckEvent> = {}): CheckEvent {
  return { at, key: KEY, outcome: "allowed", reason: "ok", status: 200, front: "grpc", route: "GET /v1/orders", latencySeconds: 0.001, ...more };
}
