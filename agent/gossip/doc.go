// Package gossip is cluster membership and failure detection over
// hashicorp/memberlist (SWIM): every control node and worker is a member,
// on port 7946 TCP and UDP, with every message encrypted (AES-GCM) by the
// cluster's gossip key, which `ctl join` hands to each node. A process
// without the key cannot join: its messages fail to decrypt and its own
// push/pull is refused.
//
// Each member carries Meta (role, node name, node IP, pod range, and for
// control nodes the API address), so a member learns the others' addresses
// and ranges from membership alone.
//
// A member is Dead only when memberlist's suspicion of it ran out: one
// observer's failed direct probe is followed by indirect probes through
// other members and a suspicion period in which the suspect may refute, so
// a node cut off from one member but reachable by the others stays alive.
// LANTiming is tuned so a dead member is declared dead within about 3 s
// in a cluster of up to 500 members (see LANTiming for the arithmetic;
// make bench-gossip measures it, with memberlist's defaults as the
// anchor, and BENCHMARKS.md has the runs). Members send uncompressed
// packets through a transport of this package (transport.go) that costs
// less per packet than memberlist's own.
// Stats and Config.OnChange expose counters and state changes (metrics,
// the benchmark).
//
// The package imports no other Skiff package; the control plane consumes it
// through small interfaces of its own (nodelifecycle.MemberHealth), wired
// by cmd/ctl.
package gossip
