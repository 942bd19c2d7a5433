// Package netproxy owns the Service data path on a node: it turns Services and
// Endpoints into kernel state so that traffic to a ClusterIP (or to any node
// address at a NodePort) reaches a ready endpoint.
//
// Two backends implement the same behaviour: IPVS (moby/ipvs, with a few
// nftables rules for masquerade marks) where the kernel has ip_vs, and plain
// nftables DNAT maps where it does not. Both sync incrementally: they compare
// what the Services and Endpoints want with what the kernel holds and change
// only the difference, so neither a change nor a restart of the proxy
// interrupts established traffic. Each backend registers itself from its
// own file (backends.go: name, preference for "auto", kernel probe).
//
// All kernel programming targets one network namespace (Config.NetNSPath), so
// tests run entirely inside namespaces they create.
//
// The Service and Endpoints types here are plain Go; the agent adapts the API
// objects to them.
package netproxy
