// Package serviceaccount is the leader loop that gives every namespace its
// "default" ServiceAccount, as Kubernetes' service account controller does:
// one deleted is made again while its namespace lives (a new namespace is
// stored with its account already, by the API's admission; namespaces
// stored before that get theirs here). Pods that name no account run as it (the API's
// ServiceAccount admission defaults spec.serviceAccountName).
package serviceaccount
