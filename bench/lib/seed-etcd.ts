// Seeds issued ApiKeys (and their Secrets) straight into the bench control plane's etcd,
// as the apiserver itself stores them, many per transaction: 100,000 keys in well under a
// minute, where the apiserver takes two or three requests a key (a create, a status write
// and the Secret; about 600 requests/s on two cores, so 100,000 keys in 8–10 minutes).
//
// Only for the bench's own control plane (etcd on loopback, no TLS). Everything keyward
// then reads goes through the real apiserver: its watch cache sees these writes through
// its etcd watch, and lists and watches serve them as if they had been created through it.
// A custom resource is stored as JSON; a Secret too (the apiserver stores core objects as
// protobuf, but reads JSON from etcd as well).
//
// The objects are what the apiserver keeps of an ApiKey the operator has issued: spec,
// status (written through the status subresource), the two writers' managedFields, a uid
// and a creationTimestamp; resourceVersion is etcd's revision, as always.
import { randomUUID } from "node:crypto";
import type { ApiKey } from "../../src/api/types.ts";
import { buildKeySecret } from "../../src/operator/secrets.ts";
import { apiKeyObject, keyFor } from "./fixture.ts";

/** etcd's default limit of operations per transaction is 128: an ApiKey and its Secret make two. */
const KEYS_PER_TXN = 64;
const TXNS_IN_FLIGHT = 8;

interface Put {
  key: string;
  value: string;
}

/** The status the operator leaves on an issued key, so that a restart finds nothing to write. */
export function issuedStatus(obj: ApiKey, secretName: string): NonNullable<ApiKey["status"]> {
  const id = obj.status?.keys?.[0]?.id ?? "";
  return {
    state: "Active",
    keys: obj.status?.keys,
    currentKeyId: id,
    secretName,
    observedGeneration: 1,
    conditions: [{ type: "Ready", status: "True", reason: "Issued", message: `key ${id} is active`, observedGeneration: 1, lastTransitionTime: "2026-01-01T00:00:00Z" }],
  };
}

/** Key i of `namespace` as etcd holds it once issued, and its Secret's name and object. */
function storedKey(i: number, namespace: string, now: string, withSecret: boolean): Put[] {
  const obj = apiKeyObject(i, namespace);
  const name = obj.metadata.name;
  const secretName = `${name}-apikey`;
  const keyId = obj.status?.keys?.[0]?.id ?? "";
  const stored = {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata: {
      creationTimestamp: now,
      generation: 1,
      labels: obj.metadata.labels,
      managedFields: [
        {
          apiVersion: obj.apiVersion,
          fieldsType: "FieldsV1",
          fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:tier": {} } }, "f:spec": { ".": {}, "f:disabled": {}, "f:keyHash": {}, "f:owner": {}, "f:scopes": { ".": {}, 'v:"orders:read"': {}, 'v:"orders:write"': {} } } },
          manager: "kubectl",
          operation: "Update",
          time: now,
        },
        {
          apiVersion: obj.apiVersion,
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:status": {
              ".": {},
              "f:conditions": { ".": {}, 'k:{"type":"Ready"}': { ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {} } },
              "f:currentKeyId": {},
              "f:keys": { ".": {}, [`k:{"id":"${keyId}"}`]: { ".": {}, "f:createdAt": {}, "f:hash": {}, "f:id": {}, "f:state": {} } },
              "f:observedGeneration": {},
              "f:secretName": {},
              "f:state": {},
            },
          },
          manager: "keyward-operator",
          operation: "Update",
          subresource: "status",
          time: now,
        },
      ],
      name,
      namespace,
      uid: randomUUID(),
    },
    spec: { disabled: false, ...obj.spec },
    status: issuedStatus(obj, secretName),
  };
  const puts: Put[] = [{ key: `/registry/keyward.dev/apikeys/${namespace}/${name}`, value: JSON.stringify(stored) }];
  if (withSecret) {
    const secret = buildKeySecret({ ...obj, metadata: { ...obj.metadata, uid: stored.metadata.uid } }, keyFor(i), keyId);
    const meta = { ...secret.metadata, uid: randomUUID(), creationTimestamp: now };
    puts.push({ key: `/registry/secrets/${namespace}/${secretName}`, value: JSON.stringify({ ...secret, metadata: meta }) });
  }
  return puts;
}

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

/** One etcd transaction of puts, through etcd's JSON gateway (/v3/kv/txn). */
async function txn(etcdUrl: string, puts: Put[]): Promise<void> {
  const res = await fetch(`${etcdUrl}/v3/kv/txn`, {
    method: "POST",
    body: JSON.stringify({ success: puts.map((p) => ({ request_put: { key: b64(p.key), value: b64(p.value) } })) }),
  });
  if (!res.ok) throw new Error(`etcd txn: HTTP ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { succeeded?: boolean };
  if (body.succeeded === false) throw new Error("etcd txn did not succeed");
}

/**
 * Writes keys 0..n-1 of `namespace` (the namespace itself and its policy must exist, created
 * through the apiserver) into etcd, with their Secrets unless `secrets` is false. Returns the
 * number of etcd transactions.
 */
export async function seedKeysIntoEtcd(etcdUrl: string, namespace: string, n: number, secrets: boolean, log: (s: string) => void): Promise<number> {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  let next = 0;
  let txns = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: TXNS_IN_FLIGHT }, async () => {
      while (next < n) {
        const from = next;
        const to = Math.min(n, from + KEYS_PER_TXN);
        next = to;
        const puts: Put[] = [];
        for (let i = from; i < to; i++) puts.push(...storedKey(i, namespace, now, secrets));
        await txn(etcdUrl, puts);
        txns++;
        const before = done;
        done += to - from;
        if (Math.floor(done / 20_000) > Math.floor(before / 20_000)) log(`seeded ${done}/${n} issued ApiKeys into etcd`);
      }
    }),
  );
  return txns;
}
