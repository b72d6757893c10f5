import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certDir, type CertDir } from "../../test/support/certs.ts";
import { entryEndMs, peerAllowed, peerIdentities } from "./peer.ts";

describe("peerIdentities", () => {
  let certs: CertDir;
  beforeAll(async () => {
    certs = await certDir();
  });
  afterAll(() => certs.remove());

  it("reads the URI and DNS subjectAltNames of a certificate, not its IPs, emails or CN", async () => {
    const ca = await certs.ca("peer-ca");
    const c = await ca.client("envoy-cn", "URI:spiffe://cluster.local/ns/ingress/sa/envoy,DNS:envoy.ingress.svc,IP:10.0.0.1,email:ops@example.com");
    const x509 = new X509Certificate(await readFile(c.cert));
    expect(peerIdentities(x509)).toEqual(["spiffe://cluster.local/ns/ingress/sa/envoy", "envoy.ingress.svc"]);
    expect(peerIdentities(new X509Certificate(await readFile((await ca.client("no-san")).cert)))).toEqual([]);
    expect(peerIdentities(undefined)).toEqual([]);
  });
});

describe("peerAllowed", () => {
  it("matches exactly, or by the prefix before a final *", () => {
    const allowed = ["spiffe://cluster.local/ns/ingress/sa/envoy", "spiffe://cluster.local/ns/edge/*"];
    expect(peerAllowed(["spiffe://cluster.local/ns/ingress/sa/envoy"], allowed)).toBe(true);
    expect(peerAllowed(["spiffe://cluster.local/ns/edge/sa/gw"], allowed)).toBe(true);
    expect(peerAllowed(["spiffe://cluster.local/ns/ingress/sa/envoy2"], allowed)).toBe(false);
    expect(peerAllowed(["spiffe://cluster.local/ns/edgy/sa/gw"], allowed)).toBe(false);
    expect(peerAllowed([], allowed)).toBe(false);
  });
});

describe("entryEndMs", () => {
  it("is the start plus the longest timing, undefined without a start", () => {
    const start = { seconds: "1800000000", nanos: 500_000_000 };
    expect(entryEndMs({ common_properties: { start_time: start, duration: { seconds: "2" }, time_to_last_upstream_rx_byte: { nanos: 1_000_000 } } })).toBe(1_800_000_002_500);
    expect(entryEndMs({ common_properties: { start_time: start } })).toBe(1_800_000_000_500);
    expect(entryEndMs({ common_properties: {} })).toBeUndefined();
  });
});
