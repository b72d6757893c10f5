import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configMarkdown, loadConfig, SETTINGS } from "./config.ts";
import { formatDuration, parseDuration } from "../util/duration.ts";

describe("config", () => {
  it("uses defaults, then environment variables, then flags", () => {
    expect(loadConfig([], {}).config.workers).toBe(4);
    expect(loadConfig([], { KEYWARD_WORKERS: "8" }).config.workers).toBe(8);
    expect(loadConfig(["--workers=2"], { KEYWARD_WORKERS: "8" }).config.workers).toBe(2);
    expect(loadConfig(["--workers", "3"], {}).config.workers).toBe(3);
  });

  it("parses durations, booleans and lists", () => {
    const { config, args } = loadConfig(["run", "--lease-duration=20s", "--no-leader-elect", "--namespaces=a, b"], {});
    expect(args).toEqual(["run"]);
    expect(config.leaseDuration).toBe(20_000);
    expect(config.leaderElect).toBe(false);
    expect(config.namespaces).toEqual(["a", "b"]);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(formatDuration(5_400_000)).toBe("1h30m");
  });

  it("stops with a message that names the setting", () => {
    expect(() => loadConfig(["--workers=many"], {})).toThrow(/--workers.*whole number/);
    expect(() => loadConfig([], { KEYWARD_LEASE_DURATION: "15" })).toThrow(/KEYWARD_LEASE_DURATION.*not a duration/);
    expect(() => loadConfig(["--no-such-flag"], {})).toThrow(/unknown flag --no-such-flag/);
    expect(() => loadConfig(["--log-level=loud"], {})).toThrow(/not one of debug, info, warn, error/);
    expect(() => loadConfig(["--lease-renew-deadline=20s"], {})).toThrow(/shorter than --lease-duration/);
  });

  it("takes a process count or auto for --authz-workers, apart from the operator's --workers", () => {
    expect(loadConfig([], {}).config.authzWorkers).toBe(1);
    expect(loadConfig([], { KEYWARD_AUTHZ_WORKERS: "3" }).config.authzWorkers).toBe(3);
    expect(loadConfig(["--authz-workers=2"], { KEYWARD_AUTHZ_WORKERS: "3" }).config).toMatchObject({ authzWorkers: 2, workers: 4 });
    expect(loadConfig(["--authz-workers", "auto"], {}).config.authzWorkers).toBe(availableParallelism());
    expect(loadConfig([], { KEYWARD_AUTHZ_WORKERS: "AUTO" }).config.authzWorkers).toBe(availableParallelism());
    for (const bad of ["0", "-1", "1.5", "two", "2x", " ", "0x2", "1e1"]) {
      expect(() => loadConfig([`--authz-workers=${bad}`], {}), bad).toThrow(/--authz-workers \(authzWorkers\): ".*" is not a whole number of processes from 1, or auto/);
    }
    expect(() => loadConfig([], { KEYWARD_AUTHZ_WORKERS: "none" })).toThrow(/\$KEYWARD_AUTHZ_WORKERS/);
  });

  it("names the HTTP front's proxy, with no default, and takes a path prefix only for Envoy", () => {
    expect(loadConfig([], {}).config.httpAuthProxy).toBe("");
    expect(loadConfig(["--http-auth-proxy=traefik"], {}).config.httpAuthProxy).toBe("traefik");
    expect(() => loadConfig(["--http-auth-proxy=apache"], {})).toThrow(/not one of nginx, traefik, envoy/);
    expect(loadConfig(["--http-auth-proxy=envoy", "--http-auth-path-prefix=/authz"], {}).config.httpAuthPathPrefix).toBe("/authz");
    expect(() => loadConfig(["--http-auth-proxy=nginx", "--http-auth-path-prefix=/authz"], {})).toThrow(/needs --http-auth-proxy=envoy/);
    expect(() => loadConfig(["--http-auth-proxy=envoy", "--http-auth-path-prefix=authz"], {})).toThrow(/starts with \//);
  });

  it("takes TLS files as a set: certificate and key together, a client CA only with them", () => {
    const tls = loadConfig(["--tls-cert-file=/t/tls.crt", "--tls-key-file=/t/tls.key", "--tls-client-ca-file=/t/ca.crt", "--tls-reload-interval=30s"], {}).config;
    expect(tls).toMatchObject({ tlsCertFile: "/t/tls.crt", tlsKeyFile: "/t/tls.key", tlsClientCaFile: "/t/ca.crt", tlsRequireClientCert: true, tlsReloadInterval: 30_000 });
    expect(loadConfig([], {}).config).toMatchObject({ tlsCertFile: "", tlsKeyFile: "", tlsClientCaFile: "", tlsReloadInterval: 10_000 });
    expect(() => loadConfig(["--tls-cert-file=/t/tls.crt"], {})).toThrow(/--tls-cert-file and --tls-key-file go together/);
    expect(() => loadConfig([], { KEYWARD_TLS_KEY_FILE: "/t/tls.key" })).toThrow(/--tls-cert-file and --tls-key-file go together/);
    expect(() => loadConfig(["--tls-client-ca-file=/t/ca.crt"], {})).toThrow(/--tls-client-ca-file needs --tls-cert-file/);
    expect(() => loadConfig(["--tls-cert-file=/a", "--tls-key-file=/b", "--tls-reload-interval=10ms"], {})).toThrow(/below the minimum/);
  });

  it("documents every setting in docs/configuration.md", () => {
    const doc = readFileSync(join(import.meta.dirname, "..", "..", "docs", "configuration.md"), "utf8");
    expect(doc, "run `make docs` to regenerate docs/configuration.md").toBe(configMarkdown());
    for (const st of Object.values(SETTINGS)) expect(st.doc.length).toBeGreaterThan(10);
  });
});
