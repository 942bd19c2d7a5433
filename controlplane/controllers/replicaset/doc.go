// Package replicaset is the ReplicaSet and ReplicationController
// controller: it keeps spec.replicas active pods matching the selector,
// adopts matching orphans (sets itself as their controller
// ownerReference) and releases owned pods that stop matching, deletes the
// least useful pods first (unscheduled, not ready, newest), and reports
// replicas, fullyLabeledReplicas, readyReplicas, availableReplicas and
// observedGeneration in status. Both kinds share one implementation
// through a small adapter; they differ only in their selector shape.
package replicaset
