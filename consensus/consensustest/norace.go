//go:build !race

package consensustest

const raceSlowdown = 1
