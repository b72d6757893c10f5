// Loads keyward's gRPC services from protos/ with @grpc/proto-loader. Envoy's
// own imports (core types, attribute_context, http_status, google.rpc.status,
// validate and udpa annotations) come from the Envoy API trees that ship in the
// npm package @grpc/grpc-js-xds, under deps/ (src/util/envoy-protos.ts).
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { envoyIncludeDirs } from "../util/envoy-protos.ts";

export const PROTO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../protos");
export const AUTHZ_PROTO = "envoy/service/auth/v3/external_auth.proto";
export const HEALTH_PROTO = "grpc/health/v1/health.proto";
export const AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization";

export function loadProtos(): PackageDefinition {
  return loadSync([AUTHZ_PROTO, HEALTH_PROTO], {
    keepCase: true,
    longs: String,
    enums: Number,
    defaults: false,
    oneofs: true,
    includeDirs: [PROTO_ROOT, ...envoyIncludeDirs()],
  });
}

// The parts of Envoy's CheckRequest keyward reads (field names as in the proto).
export interface CheckRequestMessage {
  attributes?: {
    source?: { address?: { socket_address?: { address?: string } } };
    request?: {
      http?: {
        method?: string;
        host?: string;
        path?: string;
        headers?: Record<string, string>;
        /** Not a proto field: the headers map as keyward's decoder leaves it when asked (LazyHeaders in decode.ts). */
        lazy_headers?: { get(name: string): string | undefined };
        header_map?: { headers?: { key?: string; value?: string; raw_value?: Uint8Array }[] };
      };
    };
  };
}

export interface HeaderValueOption {
  header: { key: string; value: string };
  append_action?: number;
}

// google.protobuf.Struct comes from protobufjs's built-in descriptors, whose field names are camelCase even with keepCase.
export interface StructValue {
  stringValue?: string;
  listValue?: { values: StructValue[] };
}

export interface CheckResponseMessage {
  status: { code: number; message?: string };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
  ok_response?: {
    headers: HeaderValueOption[];
    headers_to_remove: string[];
    response_headers_to_add: HeaderValueOption[];
    query_parameters_to_remove: string[];
  };
  dynamic_metadata?: { fields: Record<string, StructValue> };
}
