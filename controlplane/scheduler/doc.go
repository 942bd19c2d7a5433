// Package scheduler decides which node each pending pod runs on, as
// kube-scheduler does: filters rule nodes out (readiness, resources, node
// name and selector, required node affinity, taints, host ports, hostPath
// volumes), scores rank the rest (least requested, balanced allocation,
// spreading pods of one owner, preferred node affinity), and ties are
// broken fairly. It runs only on the Raft leader; binds are committed in
// batches through the API.
package scheduler
