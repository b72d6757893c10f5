// Every decision the check path makes, as a reason code, and the one table that
// maps a reason to its outcome: the HTTP status the caller sees and the gRPC
// status code Envoy reads from CheckResponse.status.
export const REASONS = {
  ok: { status: 200, outcome: "allowed" },
  missing_key: { status: 401, outcome: "unauthenticated" },
  conflicting_keys: { status: 401, outcome: "unauthenticated" },
  unknown_key: { status: 401, outcome: "unauthenticated" },
  key_disabled: { status: 401, outcome: "unauthenticated" },
  key_expired: { status: 401, outcome: "unauthenticated" },
  key_grace_ended: { status: 401, outcome: "unauthenticated" },
  no_policy: { status: 403, outcome: "forbidden" },
  wrong_tenant: { status: 403, outcome: "forbidden" },
  scope_missing: { status: 403, outcome: "forbidden" },
  source_not_allowed: { status: 403, outcome: "forbidden" },
  source_unknown: { status: 403, outcome: "forbidden" },
  path_not_normalized: { status: 403, outcome: "forbidden" },
  bad_request: { status: 400, outcome: "invalid" },
  rate_limited: { status: 429, outcome: "limited" },
  quota_exceeded: { status: 429, outcome: "limited" },
  unknown_key_throttled: { status: 429, outcome: "limited" },
  not_ready: { status: 503, outcome: "error" },
  index_stale: { status: 503, outcome: "error" },
  internal_error: { status: 500, outcome: "error" },
} as const satisfies Record<string, { status: number; outcome: Outcome }>;

export type Outcome = "allowed" | "unauthenticated" | "forbidden" | "invalid" | "limited" | "error";
export type Reason = keyof typeof REASONS;

/** google.rpc.Code values used in CheckResponse.status. */
export const GRPC_CODE = { OK: 0, INVALID_ARGUMENT: 3, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

const GRPC_BY_HTTP: Record<number, number> = {
  200: GRPC_CODE.OK,
  400: GRPC_CODE.INVALID_ARGUMENT,
  401: GRPC_CODE.UNAUTHENTICATED,
  403: GRPC_CODE.PERMISSION_DENIED,
  429: GRPC_CODE.RESOURCE_EXHAUSTED,
  500: GRPC_CODE.INTERNAL,
  503: GRPC_CODE.UNAVAILABLE,
};

export function grpcCodeFor(httpStatus: number): number {
  return GRPC_BY_HTTP[httpStatus] ?? GRPC_CODE.PERMISSION_DENIED;
}
