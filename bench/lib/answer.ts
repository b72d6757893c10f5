// The answer keyward's check path gives an allowed bench request, encoded: what a null server
// sends back to measure what Envoy does with keyward's answers apart from keyward's check.
import type * as grpc from "@grpc/grpc-js";
import { Checker } from "../../src/authz/check.ts";
import { toCheckInput, toCheckResponse } from "../../src/authz/check-messages.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckResponseMessage } from "../../src/authz/proto.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { KeyIndex } from "../../src/index/keys.ts";
import { Limiter } from "../../src/limits/limiter.ts";
import { PolicyIndex } from "../../src/policy/policy.ts";
import { benchPolicy, checkRequestFor, fillIndex, keyFor, rng } from "./fixture.ts";

/** The encoded CheckResponse for an allowed bench request: headers to set and remove, dynamic metadata. */
export function keywardAnswer(): Buffer {
  const keys = new KeyIndex();
  fillIndex(keys, 1);
  const policies = new PolicyIndex();
  policies.apply("add", benchPolicy());
  const config = defaultConfig();
  const checker = new Checker({ keys, policies, limiter: new Limiter(), now: Date.now, xffTrustedHops: config.xffTrustedHops });
  const d = checker.check(toCheckInput(checkRequestFor("valid", keyFor(0), rng(1))));
  if (d.status !== 200) throw new Error(`the bench request was denied: ${d.reason}`);
  const svc = loadProtos()[AUTHZ_SERVICE] as grpc.ServiceDefinition;
  const serialize = svc.Check!.responseSerialize as (m: CheckResponseMessage) => Buffer;
  return serialize(toCheckResponse(d, { keyIdHeader: config.keyIdHeader.toLowerCase(), ownerHeader: config.ownerHeader.toLowerCase(), realm: config.authRealm }));
}
