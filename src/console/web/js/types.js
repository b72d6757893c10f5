// @ts-check
// The usage API's answers the console reads (docs/usage.md, "Usage API"; the console's views).

/**
 * @typedef {"Pending" | "Active" | "Rotating" | "Expired" | "Disabled" | "Failed" | "Deleted"} KeyState
 *
 * @typedef {object} InventoryItem
 * @property {string} namespace
 * @property {string} name
 * @property {string} uid
 * @property {string} [keyId]
 * @property {string} owner
 * @property {Record<string, string>} labels
 * @property {KeyState} state
 * @property {number} [expiresAt]
 * @property {number} [lastUsedAt]
 * @property {number} requests24h
 * @property {string[]} firingAlerts
 *
 * @typedef {object} AlertRecord
 * @property {string} alert
 * @property {string} namespace
 * @property {string} name
 * @property {string} owner
 * @property {"firing" | "resolved"} state
 * @property {number} startsAt
 * @property {number} [endsAt]
 * @property {string} summary
 *
 * @typedef {object} KeyVersion
 * @property {string} keyId
 * @property {"active" | "grace" | "expired"} state
 * @property {number} [createdAt]
 * @property {number} [graceUntil]
 * @property {number} [lastUsedAt]
 *
 * @typedef {object} KeyDetail
 * @property {string} namespace
 * @property {string} name
 * @property {string} uid
 * @property {string} owner
 * @property {Record<string, string>} labels
 * @property {string[]} scopes
 * @property {KeyState} state
 * @property {number} [expiresAt]
 * @property {number} createdAt
 * @property {KeyVersion[]} versions
 * @property {AlertRecord[]} alerts
 *
 * @typedef {Record<string, number | undefined> & { at: number, requests: number, allowed: number, denied: number, status4xx: number, status5xx: number }} TimelinePoint
 * @typedef {Record<string, number | undefined> & { at: number }} LatencyPoint
 * @typedef {{ endpoint: string, requests: number, allowed: number, denied: number, status4xx: number, status5xx: number, checkMicrosAvg: number }} EndpointUsage
 * @typedef {{ country: string, requests: number }} CountryUsage
 * @typedef {{ network: string, requests: number, firstAt: number, lastAt: number }} NetworkUsage
 * @typedef {{ at: number, namespace: string, name: string, keyId?: string, method: string, path: string, status: number, reason: string, sourceAddress: string, country: string }} Denial
 */

export {};
