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
	// feasible and best are PlaceSampled's buffers, reused across pods.
	feasible, best []*NodeInfo
}

// NewAlgorithm uses the default filters and scores; seed makes tie-breaks
// reproducible in tests.
func NewAlgorithm(seed uint64) *Algorithm {
	return &Algorithm{Filters: DefaultFilters, Scores: DefaultScores, rng: rand.New(rand.NewPCG(seed, seed^0x5eed))}
}

// Place returns the chosen node, or a *FitError.
func (a *Algorithm) Place(p *PodInfo, nodes []*NodeInfo) (*NodeInfo, error) {
	fe := &FitError{Nodes: len(nodes), Reasons: map[string]int{}}
	var best []*NodeInfo
	bestScore := int64(-1)
	for _, n := range nodes {
		if reason := a.firstFailure(p, n); reason != "" {
			fe.Reasons[reason]++
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
		return nil, fe
	}
	// Fair tie-break: uniform among the best, so equal nodes share load.
	return best[a.rng.IntN(len(best))], nil
}

func (a *Algorithm) firstFailure(p *PodInfo, n *NodeInfo) string {
	// Fast path, same verdict as DefaultFilters for a plain pod: the
	// filter chain runs for hundreds of nodes per pod, and most pods are
	// plain. Only a rejection needs the chain, for its reason.
	if p.plain && n.ready && !n.unschedulable && len(n.taints) == 0 && a.usesDefaultFilters() {
		free := n.Allocatable.sub(n.Requested)
		if free.Pods >= 1 && p.Requests.MilliCPU <= free.MilliCPU && p.Requests.Memory <= free.Memory {
			return ""
		}
	}
	for _, f := range a.Filters {
		if r := f.Check(p, n); r != "" {
			return r
		}
	}
	return ""
}

func (a *Algorithm) score(p *PodInfo, n *NodeInfo) int64 {
	// Fast path, same total as DefaultScores when neither the pod's
	// preferred affinity nor PreferNoSchedule taints come into play: one
	// usage computation instead of two, no calls through the table.
	if !p.prefersNodes && len(n.preferTaints) == 0 && a.usesDefaultScores() {
		cpu, mem := after(p, n)
		d := cpu - mem
		if d < 0 {
			d = -d
		}
		least := int64(((1-cpu)+(1-mem))/2*MaxScore + 0.5)
		balanced := int64((1-d)*MaxScore + 0.5)
		return least + balanced + 2*scoreSpread(p, n) + MaxScore // affinity 0, no taints: MaxScore
	}
	var total int64
	for _, s := range a.Scores {
		total += s.Weight * s.Rate(p, n)
	}
	return total
}

// usesDefaultFilters: Filters is DefaultFilters itself (not a copy a test
// may have changed).
func (a *Algorithm) usesDefaultFilters() bool {
	return len(a.Filters) == len(DefaultFilters) && len(a.Filters) > 0 && &a.Filters[0] == &DefaultFilters[0]
}

// usesDefaultScores: Scores is DefaultScores itself.
func (a *Algorithm) usesDefaultScores() bool {
	return len(a.Scores) == len(DefaultScores) && len(a.Scores) > 0 && &a.Scores[0] == &DefaultScores[0]
}
