package scheduler

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// FitError explains why no node fits, counted per reason like
// kube-scheduler: "0/5 nodes are available: 3 Insufficient cpu, 2 node(s)
// didn't match Pod's node affinity/selector."
type FitError struct {
	Nodes   int
	Reasons map[string]int
}

func (e *FitError) Error() string {
	if e.Nodes == 0 {
		return "0/0 nodes are available: no nodes registered."
	}
	parts := make([]string, 0, len(e.Reasons))
	for r, n := range e.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", e.Nodes, strings.Join(parts, ", "))
}

// Algorithm places one pod given the nodes' current accounting.
type Algorithm struct {
	Filters []Filter
	Scores  []Score
	rng     *rand.Rand
	// checks and rates are the filters and scores relevant to the pod
	// being placed (prepare), in order: the only ones run per node.
	checks []func(*PodInfo, *NodeInfo) string
	rates  []weightedRate
	// feasible and best are PlaceSampled's buffers, reused across pods.
	feasible, best []*NodeInfo
}

type weightedRate struct {
	weight int64
	rate   func(*PodInfo, *NodeInfo) int64
}

// NewAlgorithm uses the default filters and scores; seed makes tie-breaks
// reproducible in tests.
func NewAlgorithm(seed uint64) *Algorithm {
	return &Algorithm{Filters: DefaultFilters, Scores: DefaultScores, rng: rand.New(rand.NewPCG(seed, seed^0x5eed))}
}

// prepare asks every filter and score once whether it concerns p (the
// framework's PreFilter/PreScore Skip) and keeps those that do. A filter
// that cannot reject any node for p, or a score equal on every node, is
// then not run for each of the hundreds of nodes a placement looks at.
func (a *Algorithm) prepare(p *PodInfo) {
	a.checks = a.checks[:0]
	for _, f := range a.Filters {
		if f.Relevant == nil || f.Relevant(p) {
			a.checks = append(a.checks, f.Check)
		}
	}
	a.rates = a.rates[:0]
	for _, s := range a.Scores {
		if s.Relevant == nil || s.Relevant(p) {
			a.rates = append(a.rates, weightedRate{s.Weight, s.Rate})
		}
	}
}

// Place returns the chosen node, or a *FitError.
func (a *Algorithm) Place(p *PodInfo, nodes []*NodeInfo) (*NodeInfo, error) {
	a.prepare(p)
	var best []*NodeInfo
	bestScore := int64(-1)
	for _, n := range nodes {
		if a.firstFailure(p, n) != "" {
			continue
		}
		s := a.score(p, n)
		switch {
		case s > bestScore:
			bestScore, best = s, append(best[:0], n)
		case s == bestScore:
			best = append(best, n)
		}
	}
	if len(best) == 0 {
		return nil, a.fitError(p, nodes)
	}
	// Fair tie-break: uniform among the best, so equal nodes share load.
	return best[a.rng.IntN(len(best))], nil
}

// fitError counts why each node failed p (prepare(p) done).
func (a *Algorithm) fitError(p *PodInfo, nodes []*NodeInfo) *FitError {
	fe := &FitError{Nodes: len(nodes), Reasons: map[string]int{}}
	for _, n := range nodes {
		if reason := a.firstFailure(p, n); reason != "" {
			fe.Reasons[reason]++
		}
	}
	return fe
}

// firstFailure runs the filters prepared for p on n.
func (a *Algorithm) firstFailure(p *PodInfo, n *NodeInfo) string {
	for _, check := range a.checks {
		if r := check(p, n); r != "" {
			return r
		}
	}
	return ""
}

// score sums the scores prepared for p on n. A skipped score would have
// added the same to every node, so the ranking is the full table's.
func (a *Algorithm) score(p *PodInfo, n *NodeInfo) int64 {
	var total int64
	for _, r := range a.rates {
		total += r.weight * r.rate(p, n)
	}
	return total
}
