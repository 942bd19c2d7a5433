//go:build race

package consensustest

// raceSlowdown stretches FastConfig's timeouts under the race detector,
// which makes everything 2-10x slower: with the plain timeouts a leader on
// a loaded 2-core machine misses its 200 ms lease during a large batch and
// steps down, and tests fail on an election that says nothing about them.
const raceSlowdown = 3
