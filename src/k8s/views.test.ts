import { describe, expect, it } from "vitest";
import { unionOfViews } from "./views.ts";

interface Obj {
  metadata: { name: string; uid?: string; labels?: Record<string, string>; managedFields?: { time: string }[] };
  spec?: { a?: number; b?: number; list?: string[] };
  status?: { x?: string; y?: string };
}

const whole: Obj = {
  metadata: { name: "n", uid: "u", labels: { t: "p" }, managedFields: [{ time: "1" }, { time: "2" }] },
  spec: { a: 1, b: 2, list: ["x", "y"] },
  status: { x: "X", y: "Y" },
};

describe("unionOfViews", () => {
  it("keeps what either view keeps, and nothing else", () => {
    const first = (o: Obj): Obj => ({ metadata: { name: o.metadata.name, uid: o.metadata.uid }, spec: o.spec, status: { x: o.status?.x } });
    const second = (o: Obj): Obj => ({ metadata: { name: o.metadata.name, labels: o.metadata.labels, managedFields: [{ time: "2" }] }, spec: { a: o.spec?.a } });
    expect(unionOfViews(first, second)(whole)).toEqual({
      metadata: { name: "n", uid: "u", labels: { t: "p" }, managedFields: [{ time: "2" }] },
      spec: { a: 1, b: 2, list: ["x", "y"] },
      status: { x: "X" },
    });
  });

  it("takes arrays whole from the first view that keeps them, sharing them with the object", () => {
    const first = (o: Obj): Obj => ({ metadata: { name: "n" }, spec: { list: o.spec?.list } });
    const second = (): Obj => ({ metadata: { name: "n" }, spec: { list: ["other"] } });
    const out = unionOfViews(first, second)(whole);
    expect(out.spec?.list).toBe(whole.spec?.list);
  });

  it("leaves the object and the views' results unchanged", () => {
    const copy = structuredClone(whole);
    const a: Obj = { metadata: { name: "n" }, spec: { a: 1 } };
    const b: Obj = { metadata: { name: "n", uid: "u" }, spec: { b: 2 } };
    const out = unionOfViews<Obj>(() => a, () => b)(whole);
    expect(out).toEqual({ metadata: { name: "n", uid: "u" }, spec: { a: 1, b: 2 } });
    expect(a).toEqual({ metadata: { name: "n" }, spec: { a: 1 } });
    expect(b).toEqual({ metadata: { name: "n", uid: "u" }, spec: { b: 2 } });
    expect(whole).toEqual(copy);
  });
});
