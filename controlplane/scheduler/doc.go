// Package scheduler decides which node each pending pod runs on, as
// kube-scheduler does: filters rule nodes out (readiness, resources, node
// name and selector, required node affinity, taints, host ports, hostPath
// volumes), scores rank the rest (least requested, balanced allocation,
// spreading pods of one owner, preferred node affinity), and ties are
// broken fairly. Each filter and score says once per pod whether it is
// relevant to it (the framework's PreFilter/PreScore Skip): only relevant
// ones run per node, which is the fast path for plain pods, derived rather
// than hard-coded, so a new filter is never skipped by accident. It runs
// only on the Raft leader, on ctrlkit.Base like every leader loop; binds
// are committed in batches through the API. A pod no node fits may preempt
// lower-priority pods (preemption.go), ranking candidate nodes as
// kube-scheduler does: fewest victims whose eviction breaks a
// PodDisruptionBudget, then lowest victim priority, then fewest victims.
package scheduler
