// Package cascade holds no code: garbage collection through
// ownerReferences (Background, Foreground, Orphan) and namespace deletion
// are done by the API server (controlplane/api: cascading deletes, the
// foregroundDeletion finalizer, the leader's sweep for dependents of
// vanished owners, namespace termination). Its tests check that they work
// together with the controllers on a real control plane: a deleted owner's
// controller does not recreate what is being deleted, orphaned
// ReplicaSets keep their pods, a deleted namespace empties and goes.
package cascade
