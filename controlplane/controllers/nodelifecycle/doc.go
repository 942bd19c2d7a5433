// Package nodelifecycle watches node heartbeats: renewals of a node's Lease
// in kube-node-lease (what agents send every interval) and new Ready
// lastHeartbeatTimes in its status (sent only when it changes or every
// report interval). A node with neither within the grace period becomes Ready=Unknown
// and gets the node.kubernetes.io/unreachable:NoExecute taint (a node that
// reports Ready=False gets node.kubernetes.io/not-ready:NoExecute); the
// taints go again when heartbeats return. Pods on a node with NoExecute
// taints are evicted (deleted at once: nobody is left to stop them) when
// their toleration runs out; pods without a toleration for the unreachable
// and not-ready taints get DefaultTolerationSeconds, as Kubernetes'
// DefaultTolerationSeconds admission gives them 300 s. Skiff's defaults aim
// at pods running elsewhere within 10 s of a node's death.
//
// Cluster membership is the first signal when Config.Members is set: a
// node that gossip confirms failed (after its last heartbeat) goes
// Ready=Unknown at the next check, as Consul's leader marks a failed Serf
// member critical, without waiting out the grace period; heartbeats remain
// the second signal.
//
// Heartbeat age is measured on this controller's clock from when it saw
// the heartbeat change, not from the node's timestamp, so clock skew does
// not matter; a new leader gives every node a full grace period.
package nodelifecycle
