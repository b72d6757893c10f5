// Proves protos/envoy/service/auth/v3/external_auth.proto equals Envoy's wire
// contract: every message, field number, type and label, and the service method,
// compared with the definition that ships with @grpc/grpc-js-xds.
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { describe, expect, it } from "vitest";
import { AUTHZ_PROTO, loadProtos, PROTO_ROOT } from "./proto.ts";
import { envoyIncludeDirs } from "../util/envoy-protos.ts";

const MESSAGES = ["CheckRequest", "DeniedHttpResponse", "OkHttpResponse", "CheckResponse"];

interface FieldShape {
  name: string;
  number: number;
  type: string;
  label: string;
  typeName: string;
  oneofIndex: number | undefined;
}

function fields(def: PackageDefinition, msg: string): FieldShape[] {
  const t = def[`envoy.service.auth.v3.${msg}`] as unknown as { type: unknown };
  const d = t.type as { field: { name: string; number: number; type: string; label: string; typeName: string; oneofIndex?: number }[] };
  return d.field
    .map((f) => ({ name: f.name, number: f.number, type: f.type, label: f.label, typeName: f.typeName.replace(/^\./, ""), oneofIndex: f.oneofIndex }))
    .sort((a, b) => a.number - b.number);
}

describe("keyward's external_auth.proto", () => {
  const ours = loadProtos();
  const envoy = loadSync([AUTHZ_PROTO], { keepCase: true, includeDirs: envoyIncludeDirs() });

  it("is not the upstream file (ours is loaded from protos/)", () => {
    expect(PROTO_ROOT.endsWith("protos")).toBe(true);
  });

  for (const msg of MESSAGES) {
    it(`has Envoy's fields for ${msg}`, () => {
      const mine = fields(ours, msg);
      expect(mine.length).toBeGreaterThan(0);
      expect(mine).toEqual(fields(envoy, msg));
    });
  }

  it("declares Envoy's Authorization/Check method", () => {
    const svc = (def: PackageDefinition) => {
      const s = def["envoy.service.auth.v3.Authorization"] as Record<string, { path: string; requestStream: boolean; responseStream: boolean }>;
      const c = s.Check!;
      return { path: c.path, requestStream: c.requestStream, responseStream: c.responseStream };
    };
    expect(svc(ours)).toEqual({ path: "/envoy.service.auth.v3.Authorization/Check", requestStream: false, responseStream: false });
    expect(svc(ours)).toEqual(svc(envoy));
  });
});
