//go:build race

package consensustest

// Under the race detector everything runs 2-10x slower. With the plain
// timeouts a leader on a loaded 2-core machine missed its 200 ms lease
// during a large batch and stepped down, failing tests on an election that
// says nothing about them; so the lease is 3x longer. Elections only 2x
// slower: a client rides over one with its retry budget (~3 s), which 3x
// heartbeat and election timeouts (up to 3.6 s for an election) exceeded.
const (
	raceElection = 2
	raceLease    = 3
)
