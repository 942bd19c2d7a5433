// Command benchapi measures the cluster API on an in-process 3-node
// cluster on loopback (mutual TLS, real Raft, fsync'd log): pod create
// throughput and latency through the leader and through a follower, and
// watch fan-out — W watchers on pods while P pods are created — as the
// delivery latency from the create call to each watcher.
//
// Run with `make bench-api` (BENCH_ARGS="-watchers 100 -pods 1000" for a
// quick look). The last line is machine-readable:
//
//	api-bench: creates_per_s=N create_p99_ms=N watchers=1000 delivery_p99_ms=N
package main
