// Package dnsservice keeps the cluster DNS Service, kube-system/kube-dns,
// in place: a ClusterIP Service at the cluster DNS address (10.96.0.10 by
// default) with ports 53/UDP and 53/TCP and no selector, annotated with
// the cluster domain (skiff.dev/cluster-domain) stored at ctl init. Every
// node's cluster DNS server (netproxy/clusterdns) reads its address and
// domain from it, answers at that address itself, and the Service proxy
// programs nothing for it, so a lookup never leaves the node.
//
// It runs on the leader: it creates the Service when missing and puts its
// fields back when they drift, at start and every Period.
package dnsservice
