// Package serviceaccount is the leader loop that gives every namespace its
// "default" ServiceAccount, as Kubernetes' service account controller does:
// a new namespace gets one, and one deleted is made again while its
// namespace lives. Pods that name no account run as it (the API's
// ServiceAccount admission defaults spec.serviceAccountName).
package serviceaccount
