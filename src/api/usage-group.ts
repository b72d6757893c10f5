// The name of the aggregated API that serves the usage API's views through the
// kube-apiserver (ADR 0046): usage.keyward.dev/v1alpha1, resource `views`, one
// object per view. The usage API serves it (src/usage/aggregated.ts);
// `kubectl keyward usage` and `review` call it (src/cli/kubectl/usage.ts).
export const USAGE_GROUP = "usage.keyward.dev";
export const USAGE_VERSION = "v1alpha1";
export const USAGE_GROUP_VERSION = `${USAGE_GROUP}/${USAGE_VERSION}`;
/** Where the views are under the aggregated API: `${VIEWS_PREFIX}/keys` is the usage API's /api/v1/keys. */
export const VIEWS_PREFIX = `/apis/${USAGE_GROUP_VERSION}/views`;
