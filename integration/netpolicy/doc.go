// Package netpolicy shows NetworkPolicy enforcement on the multi-host
// test cluster (hostlab): real ctl nodes, pods on two workers joined by
// the VXLAN overlay, connections made from inside the pods' network
// namespaces, all within the lab's namespaces (no route out).
package netpolicy
