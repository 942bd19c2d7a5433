// Package proxytest builds a throwaway network of namespaces (a client, a
// node, backends) and runs the Service data path scenarios against a
// netproxy.Proxy programming the node. Tests on the host and the IPVS test
// inside a qemu guest share it. Nothing here touches the caller's own
// namespace: every namespace is new, has no uplink, and vanishes when its
// file descriptor is closed, even if the process dies.
package proxytest
