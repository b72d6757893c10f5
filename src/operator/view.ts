// What the operator's ApiKey watch keeps of each ApiKey (ADR 0034). The
// reconciler reads the whole spec and the status it owns; what others write or
// add (status.usage from the data plane, managedFields, annotations of other
// tools such as kubectl's last-applied-configuration) is dropped on arrival.
import { ROTATE_ANNOTATION, type ApiKey } from "../api/types.ts";

/**
 * The ApiKey without managedFields, status.usage and every annotation but keyward.dev/rotate
 * (the imperative rotation the reconciler acts on).
 */
export function operatorView(ak: ApiKey): ApiKey {
  const { managedFields: _fields, annotations, ...metadata } = ak.metadata;
  const rotate = annotations?.[ROTATE_ANNOTATION];
  const view: ApiKey = { ...ak, metadata: rotate === undefined ? metadata : { ...metadata, annotations: { [ROTATE_ANNOTATION]: rotate } } };
  if (ak.status) {
    const { usage: _usage, ...status } = ak.status;
    view.status = status;
  }
  return view;
}
