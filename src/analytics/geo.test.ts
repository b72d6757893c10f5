import { describe, expect, it } from "vitest";
import { isKeywardError } from "../errors.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkCountryDatabase, CountriesOnDemand, openCountryDatabase, PRIVATE_COUNTRY, PRIVATE_ONLY, type CountryLookup } from "./geo.ts";
import { isPrivate, networkOf } from "./network.ts";
import { parseIp } from "../index/cidr.ts";

describe("country of a source address", () => {
  it("reads public addresses from the GeoLite2 database in the package", async () => {
    const geo = await openCountryDatabase();
    expect(geo.country("81.2.69.160")).toBe("GB");
    expect(geo.country("8.8.8.8")).toBe("US");
    expect(geo.country("193.0.6.139")).toBe("NL");
    expect(geo.country("202.12.27.33")).toBe("JP");
    expect(geo.country("2a00:1450:4001::1")).toBe("DE");
    expect(geo.country("[2001:4860:4860::8888]")).toBe("US");
    // An IPv4 client on a dual-stack listener.
    expect(geo.country("::ffff:81.2.69.160")).toBe("GB");
  });

  it("calls private, loopback, link-local and unique local addresses private", async () => {
    const geo = await openCountryDatabase();
    for (const a of ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "fd12:3456::1", "fc00::1", "::ffff:10.0.0.1"]) {
      expect(geo.country(a), a).toBe(PRIVATE_COUNTRY);
    }
    for (const a of ["172.32.0.1", "11.0.0.1", "100.128.0.1", "fec0::1", "2001:db8::1"]) expect(isPrivate(parseIp(a) ?? new Uint8Array(4)), a).toBe(false);
  });

  it("leaves unknown addresses and non-addresses undefined", async () => {
    const geo = await openCountryDatabase();
    // Documentation ranges are in no country.
    expect(geo.country("203.0.113.1")).toBeUndefined();
    expect(geo.country("2001:db8::1")).toBeUndefined();
    for (const a of [undefined, "", "not an ip", "010.0.0.1", "1.2.3.4:80", "fe80::1%eth0"]) expect(geo.country(a)).toBeUndefined();
  });

  it("refuses a database file that cannot be read, with the cause", async () => {
    const err: unknown = await openCountryDatabase("/nonexistent/geo.mmdb").catch((e: unknown) => e);
    expect(isKeywardError(err, "ConfigInvalid")).toBe(true);
    expect((err as Error).cause).toBeDefined();
  });
});

describe("source network", () => {
  it("is the /24 of an IPv4 address and the /48 of an IPv6 one", () => {
    expect(networkOf("81.2.69.160")).toBe("81.2.69.0/24");
    expect(networkOf("::ffff:81.2.69.160")).toBe("81.2.69.0/24");
    expect(networkOf("2a00:1450:4001:82a::200e")).toBe("2a00:1450:4001::/48");
    expect(networkOf("2001:db8::1")).toBe("2001:db8::/48");
    expect(networkOf("2001:0:5::1")).toBe("2001:0:5::/48");
    expect(networkOf("::1")).toBe("::/48");
    expect(networkOf(undefined)).toBeUndefined();
    expect(networkOf("example.com")).toBeUndefined();
  });
});

describe("the country database on demand", () => {
  it("is checked at start by its tail alone: a missing file or one that is not a MaxMind database is ConfigInvalid", () => {
    expect(() => { checkCountryDatabase(); }).not.toThrow();
    const dir = mkdtempSync(join(tmpdir(), "keyward-geo-"));
    try {
      const notDb = join(dir, "not.mmdb");
      writeFileSync(notDb, "x".repeat(200_000));
      for (const f of [notDb, join(dir, "missing.mmdb")]) {
        let err: unknown;
        try {
          checkCountryDatabase(f);
        } catch (e) {
          err = e;
        }
        expect(isKeywardError(err, "ConfigInvalid"), f).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is read only at the first public address: rows from private addresses or none need it not, and it is read once", async () => {
    let opened = 0;
    const countries = new CountriesOnDemand(() => {
      opened++;
      return openCountryDatabase();
    }, () => {});
    const privately = await countries.lookupFor([{ source: "10.0.0.1" }, {}, { source: "::1" }, { source: "not an address" }]);
    expect(opened).toBe(0);
    expect(privately.country("10.0.0.1")).toBe(PRIVATE_COUNTRY);
    const publicly = await countries.lookupFor([{ source: "10.0.0.1" }, { source: "81.2.69.160" }]);
    expect(publicly.country("81.2.69.160")).toBe("GB");
    await countries.lookupFor([{ source: "8.8.8.8" }]);
    expect(opened).toBe(1);
  });

  it("leaves countries unknown, said once, when the database cannot be read at its first use", async () => {
    const failures: unknown[] = [];
    const countries = new CountriesOnDemand(() => Promise.reject(new Error("gone")), (err) => failures.push(err));
    const a: CountryLookup = await countries.lookupFor([{ source: "8.8.8.8" }]);
    const b = await countries.lookupFor([{ source: "8.8.4.4" }]);
    expect([a, b]).toEqual([PRIVATE_ONLY, PRIVATE_ONLY]);
    expect(a.country("8.8.8.8")).toBeUndefined();
    expect(failures).toHaveLength(1);
  });
});
