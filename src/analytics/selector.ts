// The label selectors views filter by: `k=v`, `k==v`, `k!=v`, `k` (has the
// label) and `!k` (has not), comma-separated, all of which must hold (as
// kubectl's -l, without set-based terms).
import { KeywardError } from "../errors.ts";

export type SelectorTerm = { key: string; op: "=" | "!="; value: string } | { key: string; op: "exists" | "!exists" };

// A label key: an optional DNS-subdomain prefix and a name, as Kubernetes allows.
const KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export function parseSelector(text: string): SelectorTerm[] {
  const terms: SelectorTerm[] = [];
  for (const raw of text.split(",")) {
    const t = raw.trim();
    if (t === "") continue;
    const m = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(t);
    let term: SelectorTerm;
    if (m) term = { key: m[1] as string, op: m[2] === "!=" ? "!=" : "=", value: m[3] as string };
    else if (t.startsWith("!")) term = { key: t.slice(1).trim(), op: "!exists" };
    else term = { key: t, op: "exists" };
    if (!KEY.test(term.key) || ("value" in term && !VALUE.test(term.value))) throw new KeywardError("ConfigInvalid", `label selector: "${t}" is not k=v, k!=v, k or !k with a valid label key and value`);
    terms.push(term);
  }
  return terms;
}

/** Whether `labels` match the selector (every term holds; an empty selector matches everything). */
export function selectorMatches(selector: string | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (selector === undefined) return true;
  return parseSelector(selector).every((t) => {
    const has = Object.hasOwn(labels, t.key);
    switch (t.op) {
      case "exists":
        return has;
      case "!exists":
        return !has;
      case "=":
        return labels[t.key] === t.value;
      case "!=":
        return labels[t.key] !== t.value;
    }
  });
}
