// Package overlay programs the pod network across hosts as a VXLAN overlay
// (the design of flannel's vxlan backend, our own code, vishvananda/netlink).
//
// Each node has one vxlan device (VNI 1, UDP port 8472, learning off, MTU =
// underlay MTU − 50) whose address is the network address of the node's pod
// range (e.g. 10.244.3.0/32). For every peer node it keeps three entries:
//   - a forwarding-database entry: peer VTEP MAC → peer node IP (the underlay),
//   - a permanent neighbour entry: peer overlay IP (its range's network
//     address) → peer VTEP MAC,
//   - a route: peer pod range via the peer overlay IP, onlink, dev vxlan.
//
// Peers are Nodes: their node IP is status.addresses[type=InternalIP], their
// range is spec.podCIDR and their VTEP MAC is the annotation
// skiff.io/vxlan-mac, which each agent writes on its own Node. A peer that is
// removed, or whose address, range or MAC changes, has its old entries
// deleted; after an agent restart Prune drops the entries of Nodes that went
// away meanwhile (the device outlives the agent). Nothing here NATs: pod-to-pod packets keep the source pod's IP.
package overlay
