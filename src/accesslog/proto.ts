// Envoy's gRPC Access Log Service (envoy.service.accesslog.v3), loaded with
// @grpc/proto-loader from the Envoy API tree shipped in @grpc/grpc-js-xds, and
// the parts of its messages keyward reads.
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { envoyIncludeDirs } from "../util/envoy-protos.ts";

export const ALS_PROTO = "envoy/service/accesslog/v3/als.proto";
export const ALS_SERVICE = "envoy.service.accesslog.v3.AccessLogService";

export function loadAccessLogProtos(): PackageDefinition {
  return loadSync([ALS_PROTO], { keepCase: true, longs: String, enums: Number, defaults: false, oneofs: true, includeDirs: envoyIncludeDirs() });
}

/** google.protobuf.Value as protobufjs decodes it (camelCase field names). */
export interface StructValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  listValue?: { values?: StructValue[] };
  structValue?: { fields?: Record<string, StructValue> };
}

export interface Duration {
  seconds?: string;
  nanos?: number;
}

export interface HttpLogEntry {
  common_properties?: {
    start_time?: { seconds?: string; nanos?: number };
    /** The client as Envoy saw it (after its own X-Forwarded-For handling). */
    downstream_remote_address?: { socket_address?: { address?: string } };
    time_to_first_upstream_tx_byte?: Duration;
    time_to_last_upstream_rx_byte?: Duration;
    time_to_last_downstream_tx_byte?: Duration;
    /** From the first downstream byte to the last byte sent downstream (the whole request). */
    duration?: Duration;
    metadata?: { filter_metadata?: Record<string, { fields?: Record<string, StructValue> }> };
    /** Set (with any reason) when an authorizer denied the request: Envoy answered it itself (flag UAEX). */
    response_flags?: { unauthorized_details?: { reason?: number } | null; [flag: string]: unknown } | null;
  };
  /** uint64 fields arrive as decimal strings. */
  request?: { request_method?: number; authority?: string; path?: string; request_id?: string; request_body_bytes?: string };
  response?: { response_code?: { value?: number }; response_body_bytes?: string };
}

export interface StreamAccessLogsMessage {
  identifier?: { node?: { id?: string }; log_name?: string };
  http_logs?: { log_entry?: HttpLogEntry[] };
  tcp_logs?: { log_entry?: unknown[] };
}
