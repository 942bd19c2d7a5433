// Package disruption is the leader loop that keeps each
// PodDisruptionBudget's status (Kubernetes' disruption controller): the
// pods it selects, how many are healthy (Ready and not being deleted),
// how many must stay healthy (minAvailable, or the expected pods less
// maxUnavailable; percentages of the expected pods, which are the scale of
// the pods' controllers when every selected pod has one) and so how many
// disruptions are allowed now.
//
// The API's Evict call spends one of those allowed disruptions in the
// eviction's own transaction and lists the pod under
// status.disruptedPods; this loop counts a listed pod as unhealthy until it
// is gone or being deleted (or two minutes passed), so evictions in flight
// cannot add up past the budget while its caches catch up.
package disruption
