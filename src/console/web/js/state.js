// @ts-check
// How a key's state and an alert's state read: a word and a colour class (never colour alone).

/** @type {Record<string, string>} */
const STATE_CLASS = {
  Active: "s-ok",
  active: "s-ok",
  Rotating: "s-warn",
  grace: "s-warn",
  Pending: "s-info",
  Expired: "s-bad",
  expired: "s-idle",
  Disabled: "s-bad",
  Failed: "s-bad",
  Deleted: "s-idle",
  firing: "s-bad",
  resolved: "s-idle",
};

/** @param {string} state */
export function stateClass(state) {
  return STATE_CLASS[state] ?? "s-idle";
}
