// Package clusternet is the cluster's pod network settings: the cluster
// range every pod address comes from and the size of each Node's share of
// it (spec.podCIDR), as `ctl init --cluster-cidr --node-cidr-mask-size`
// stores them. It holds the range arithmetic the podcidr controller
// allocates with and the API server validates with, so both read one
// definition.
//
// The settings live in the replicated store under StoreKey (JSON Config),
// written once when the cluster is created; a cluster whose store has none
// uses Default. Each Node's range is also claimed in the store, one key per
// node-size block under ClaimPrefix (value: the Node's name), written in
// the same transaction as the Node: two writers (two leaders, or an admin
// and a leader) can therefore never give overlapping ranges to two Nodes.
package clusternet
