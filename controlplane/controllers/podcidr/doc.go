// Package podcidr gives each Node its pod range (spec.podCIDR) from the
// cluster range, as flannel's subnet leases in the store do: a Node that
// registers without one gets the lowest free node-size block of
// clusternet's cluster range; a deleted Node's range is free again.
//
// Nothing is kept in the leader's memory: the free blocks are derived from
// the stored Nodes (the informer's list) at every allocation, so a new
// leader starts from what the store holds. The assignment is an update on
// the Node's resourceVersion (compare-and-swap), and the API server claims
// the range in the same transaction (controlplane/api's PodCIDR admission:
// one store key per block): a deposed leader still finishing cannot give
// the same range to another Node, and its late write on a Node that got a
// range meanwhile fails as a conflict. The worker count is one: each
// allocation waits until the cache holds the previous one, so one leader
// never races itself.
//
// When the range is exhausted the Node gets a Warning Event
// (CIDRNotAvailable, as Kubernetes' node IPAM says it) and stays without a
// range; it is retried at every resync and when any Node is deleted.
package podcidr
