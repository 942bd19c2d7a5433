// Package agent is the worker side of Skiff: gossip membership, the pod
// sync loop that drives this node's pods from the API, and the node-side
// machinery it uses — runtime (libcontainer pods), image (OCI pulls and
// rootfs), network (CNI) and probe (container health checks).
package agent
