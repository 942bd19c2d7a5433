// Package netpol enforces NetworkPolicies (networking.k8s.io/v1) on a node
// with nftables.
//
// Compile (model.go) is a pure function from the node's view of Pods,
// Namespaces and NetworkPolicies to a rule model: rules that follow the
// policies' structure, and sets keyed by pod IP (targets, peers, named
// ports resolved per pod). A pod's arrival or departure therefore changes
// set elements, never rules. Programmer (nft.go) writes the model into its
// own table, inet skiff-netpol, on the forward hook, where it sees traffic
// between pods on the node's bridge (bridged packets go through the inet
// hooks: bridge-nf-call-iptables), from the VXLAN device to local pods and
// from local pods to it. Ingress is decided at the destination's node,
// egress at the source's node, each for its local pods only. Decisions are
// made on the backend's address, never a ClusterIP's: nftables Services
// DNAT at prerouting, before forward; IPVS Services never pass forward
// (the ClusterIP is local: input, then IPVS sends the rewritten packet out
// through output), so the same decisions also run on the output hook for
// packets whose source is not the node's own.
//
// Semantics are Kubernetes': a pod selected by any policy with a direction
// in its policyTypes is isolated for that direction, and then only what
// some rule of some such policy allows passes; replies of allowed
// connections pass (ct state established,related). Traffic the node itself
// originates (probes) is not on the forward hook and is never filtered.
//
// Feed (feed.go) drives it from Pod, Namespace and NetworkPolicy informers:
// every change recompiles, and only a change in structure rewrites the
// table (atomically, in one transaction); otherwise only changed sets are
// replaced.
package netpol
