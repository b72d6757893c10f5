// mTLS between a test Envoy and keyward's access log service, as the recipes in
// deploy/envoy set it up: a throwaway CA, keyward's access log certificate
// (DNS localhost), and an Envoy client certificate carrying a SPIFFE ID.
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../../src/config/config.ts";
import { certDir } from "./certs.ts";

export const ENVOY_SPIFFE_ID = "spiffe://cluster.local/ns/ingress/sa/envoy";

export interface AlsTls {
  /** keyward's settings: mTLS on, only Envoy's SPIFFE ID allowed, check proofs on (the same key file for the checks and the receiver). */
  config: Partial<Config>;
  /** Envoy's client certificate and key, and the CA keyward's certificate is verified with. */
  envoy: { cert: string; key: string; ca: string };
  /** The recipes' ALS_* placeholders. */
  envoyVars: Record<string, string>;
  /** Client certificate placeholders of an Envoy keyward must refuse: one from another CA, or from the right CA naming another identity. */
  refusedEnvoyVars(kind: "other-ca" | "other-identity"): Promise<Record<string, string>>;
  remove(): Promise<void>;
}

export async function alsTls(): Promise<AlsTls> {
  const certs = await certDir();
  const ca = await certs.ca("als-ca");
  const server = await ca.server("keyward-als");
  const envoy = await ca.client("envoy-als", `URI:${ENVOY_SPIFFE_ID}`);
  const proofKeyFile = join(certs.dir, "proof-keys");
  await writeFile(proofKeyFile, `${randomBytes(32).toString("base64url")}\n`);
  return {
    config: { accessLogTlsCertFile: server.cert, accessLogTlsKeyFile: server.key, accessLogClientCaFile: ca.cert, accessLogAllowedPeers: [ENVOY_SPIFFE_ID], accessLogProofKeyFile: proofKeyFile },
    envoy: { ...envoy, ca: ca.cert },
    envoyVars: { ALS_SAN: "localhost", ALS_CA_FILE: ca.cert, ALS_CLIENT_CERT_FILE: envoy.cert, ALS_CLIENT_KEY_FILE: envoy.key },
    refusedEnvoyVars: async (kind) => {
      const issuer = kind === "other-ca" ? await certs.ca("stranger-ca") : ca;
      const c = await issuer.client(`envoy-${kind}`, kind === "other-ca" ? `URI:${ENVOY_SPIFFE_ID}` : "URI:spiffe://cluster.local/ns/batch/sa/job");
      return { ALS_CLIENT_CERT_FILE: c.cert, ALS_CLIENT_KEY_FILE: c.key };
    },
    remove: () => certs.remove(),
  };
}
