// Command benchstore is `make bench-store`: it measures Skiff's replicated
// store (three in-process control nodes on loopback, mutual TLS, fsync on)
// against a three-member etcd 3.4 cluster started from /usr/bin/etcd, in the
// same run on the same machine, with the same workload and client layout:
// 256-byte values over a fixed key space, writes and linearizable reads at
// several client counts. Skiff runs twice, once per Raft log store
// (skiff: raft-boltdb, the default; skiff-wal: hashicorp/raft-wal), the
// three clusters side by side in one run. It prints a table per log store
// against etcd and ends with a `store-bench-wal:` line and, last, the
// `store-bench:` summary line of the default store, both for 64 clients.
//
// For A/B runs of replication settings, -systems also takes variants such
// as skiff:inflight=1 or skiff-wal:maxappend=64,commit=2ms (variant.go):
// each is one more cluster measured in the same interleaved rounds, with
// its own table and a `store-bench-variant` line before the summary lines.
// -ops write skips the read points.
//
// It is its own Go module because etcd's client (go.etcd.io/etcd/client/v3)
// brings dependencies the main module should not carry; a replace directive
// points it at the repository root.
package main
