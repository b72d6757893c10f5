import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certDir, type CertDir, type Pair, type TestCa } from "../../test/support/certs.ts";
import { defaultConfig, loadConfig } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import { createLogger, silentLogger } from "../log.ts";
import { accessLogLimits, openAccessLogTls } from "./settings.ts";

describe("access log settings", () => {
  let certs: CertDir;
  let ca: TestCa;
  let server: Pair;
  beforeAll(async () => {
    certs = await certDir();
    ca = await certs.ca("als-settings-ca");
    server = await ca.server("keyward-als");
  });
  afterAll(() => certs.remove());

  it("takes the three mTLS files together, and allowed peers only with a client CA", () => {
    expect(() => loadConfig(["--access-log-tls-cert-file=/c", "--access-log-tls-key-file=/k"], {})).toThrow(/go together/);
    expect(() => loadConfig(["--access-log-allowed-peers=spiffe://a/b"], {})).toThrow(/needs --access-log-client-ca-file/);
    expect(loadConfig(["--access-log-tls-cert-file=/c", "--access-log-tls-key-file=/k", "--access-log-client-ca-file=/ca", "--access-log-allowed-peers=spiffe://a/b,spiffe://c/*"], {}).config.accessLogAllowedPeers).toEqual(["spiffe://a/b", "spiffe://c/*"]);
  });

  it("maps the limits", () => {
    expect(accessLogLimits(defaultConfig({ accessLogMaxStreams: 3 }))).toEqual({ maxConnections: 256, maxStreamsPerConnection: 3, maxMessageBytes: 1_048_576, maxEntriesPerMessage: 1000, maxEntryAgeMs: 3_600_000 });
  });

  it("warns that a port without mTLS is open to any peer", async () => {
    const lines: string[] = [];
    expect(await openAccessLogTls(defaultConfig(), createLogger({ level: "info", sink: (l) => lines.push(l) }))).toBeUndefined();
    expect(lines.join("\n")).toMatch(/cleartext and unauthenticated/);
  });

  it("stops start-up with ConfigInvalid naming the settings and the file when a file is missing or not PEM", async () => {
    const notPem = join(certs.dir, "not-a-ca.pem");
    await writeFile(notPem, "hello");
    const base = { accessLogTlsCertFile: server.cert, accessLogTlsKeyFile: server.key, accessLogClientCaFile: ca.cert, tlsReloadInterval: 0 };
    const cases: [Partial<typeof base>, RegExp][] = [
      [{ accessLogClientCaFile: join(certs.dir, "missing.pem") }, /missing\.pem/],
      [{ accessLogClientCaFile: notPem }, /not-a-ca\.pem holds no PEM certificate/],
      [{ accessLogTlsKeyFile: (await ca.client("other")).key }, /does not belong to the certificate/],
    ];
    for (const [bad, why] of cases) {
      const err = await openAccessLogTls(defaultConfig({ ...base, ...bad }), silentLogger).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KeywardError);
      expect((err as KeywardError).code).toBe("ConfigInvalid");
      expect((err as Error).message).toMatch(/--access-log-client-ca-file/);
      expect((err as Error).message).toMatch(why);
    }
    const ok = await openAccessLogTls(defaultConfig(base), silentLogger);
    expect(ok?.requestCert).toBe(true);
    ok?.close();
  });
});
