// Kubernetes label selectors compiled to a predicate once, when a policy changes.
import type { LabelSelector } from "../api/types.ts";

export type LabelMatcher = (labels: Readonly<Record<string, string>>) => boolean;

export const matchAll: LabelMatcher = () => true;

export function compileSelector(sel: LabelSelector | undefined): LabelMatcher {
  if (!sel) return matchAll;
  const tests: LabelMatcher[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) tests.push((l) => l[k] === v);
  for (const e of sel.matchExpressions ?? []) {
    const values = new Set(e.values ?? []);
    const { key } = e;
    switch (e.operator) {
      case "In":
        tests.push((l) => l[key] !== undefined && values.has(l[key]));
        break;
      case "NotIn":
        tests.push((l) => l[key] === undefined || !values.has(l[key]));
        break;
      case "Exists":
        tests.push((l) => l[key] !== undefined);
        break;
      case "DoesNotExist":
        tests.push((l) => l[key] === undefined);
        break;
      default:
        // An operator we do not know selects nothing (fail closed).
        tests.push(() => false);
    }
  }
  if (tests.length === 0) return matchAll;
  return (labels) => tests.every((t) => t(labels));
}
