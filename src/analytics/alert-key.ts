// The ApiKey an alert is about, as the alert queries name it; in a module of its own so that
// the alert rules load without the query layer (ADR 61).
/** A live ApiKey as alerts name it. */
export interface AlertKey {
  uid: string;
  namespace: string;
  name: string;
  owner: string;
}

export const alertKey = (r: AlertKey): AlertKey => ({ uid: r.uid, namespace: r.namespace, name: r.name, owner: r.owner });
