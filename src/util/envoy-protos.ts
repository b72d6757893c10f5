// Envoy's API protos (core types, attribute_context, http_status,
// google.rpc.status, validate and udpa annotations, the access log service)
// ship in the npm package @grpc/grpc-js-xds, under deps/; the ext_authz and
// access log receivers both load their services against them.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { KeywardError } from "../errors.ts";

/** The directories that resolve Envoy's imports. */
export function envoyIncludeDirs(): string[] {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve("@grpc/grpc-js-xds"));
  } catch (err) {
    throw new KeywardError("ConfigInvalid", "the npm package @grpc/grpc-js-xds (Envoy's API protos) is not installed", { cause: err });
  }
  while (!dir.endsWith("grpc-js-xds") && dirname(dir) !== dir) dir = dirname(dir);
  const deps = join(dir, "deps");
  return ["envoy-api", "googleapis", "xds", "protoc-gen-validate"].map((d) => join(deps, d));
}
