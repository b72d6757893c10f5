// `make bench`'s limits section through gRPC: every store's 50% runs take one offered load, half
// of memory mode's maximum (ADR 0055), whatever the store's own maximum.
import { describe, expect, it } from "vitest";
import { offeredLoadAt50 } from "../../bench/limits-grpc.ts";

describe("offeredLoadAt50", () => {
  it("gives memory mode half its own median maximum, in whole checks per second", () => {
    expect(offeredLoadAt50({ own: 2000 })).toBe(1000);
    expect(offeredLoadAt50({ own: 1058.3 })).toBe(529);
  });

  it("gives every store after memory half of memory's maximum, not of its own", () => {
    expect(offeredLoadAt50({ memory: 1058.3, own: 2527 })).toBe(529);
    expect(offeredLoadAt50({ memory: 6000, own: 2675.3 })).toBe(3000);
  });

  it("gives a store measured without memory half its own maximum", () => {
    expect(offeredLoadAt50({ memory: undefined, own: 2527 })).toBe(1264);
  });

  it("gives every store the load given (--rate-at-50), memory's included", () => {
    expect(offeredLoadAt50({ own: 2000 }, 700)).toBe(700);
    expect(offeredLoadAt50({ memory: 2000, own: 5000 }, 700)).toBe(700);
  });

  it("never offers ghz --rps 0 (no limit, a closed loop): a maximum under 1 check/s or a bad --rate-at-50 is an error", () => {
    expect(() => offeredLoadAt50({ own: 0 })).toThrow(/no offered load at 50%/);
    expect(() => offeredLoadAt50({ own: NaN })).toThrow(/no offered load at 50%/);
    expect(() => offeredLoadAt50({ memory: 0.8, own: 3000 })).toThrow(/no offered load at 50%/);
    expect(() => offeredLoadAt50({ own: 2000 }, 0)).toThrow(/--rate-at-50 must be at least 1/);
    expect(() => offeredLoadAt50({ own: 2000 }, Number("abc"))).toThrow(/--rate-at-50 must be at least 1/);
  });
});
