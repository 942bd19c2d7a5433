//go:build !race

package consensustest

const (
	raceElection = 1
	raceLease    = 1
)
