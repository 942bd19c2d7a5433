// Command benchfailover measures how long a three-node Skiff control plane
// stops acknowledging writes when its leader dies (kill -9) and when its
// leader is stopped for a planned restart (SIGTERM), under write load.
//
// Everything is real: three processes of the ctl binary on loopback
// (ctl init, ctl join --control), mutual TLS, the Go client writing
// ConfigMaps through all three API servers. For each round the bench
// finds the leader with `ctl members`, signals it, measures, restarts the
// node from its data dir and waits until all three are healthy again.
//
// Measures, from the signal (T0):
//   - kill: the first acknowledged write among those sent after the
//     process has exited (so no write the dead leader committed counts);
//     with the moments the survivors logged the new leader and "leader
//     ready" (its term's barrier committed), from their logs.
//   - SIGTERM: the longest span without an acknowledged write from T0
//     until a second after the process exited (the leader hands
//     leadership over before it stops serving).
//
// The last line is
//
//	failover-bench: kills=N kill_p50_ms=… kill_p99_ms=… term_p50_ms=… term_p99_ms=…
//
// Run it with `make bench-failover` (BENCH_ARGS="-kills 5 -terms 5" for a
// shorter run).
package main
