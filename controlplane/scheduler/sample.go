package scheduler

// NodesToScore is how many feasible nodes a placement looks for before it
// stops filtering, as kube-scheduler's percentageOfNodesToScore: every node
// in small clusters, then an adaptive share (50% minus 1% per 125 nodes,
// at least 5%) but never fewer than 100 nodes. percentage > 0 overrides
// the adaptive share; 100 scores every node.
func NodesToScore(total, percentage int) int {
	if total < 100 || percentage >= 100 {
		return total
	}
	if percentage <= 0 {
		percentage = max(50-total/125, 5)
	}
	n := total * percentage / 100
	return max(n, 100)
}

// PlaceSampled places p by filtering nodes from index start (wrapping)
// until want feasible nodes are found, then scoring those. It returns the
// index to start the next placement from, so successive pods look at
// different nodes, as kube-scheduler's nextStartNodeIndex. When no node
// fits, every node was filtered and the *FitError counts all of them.
func (a *Algorithm) PlaceSampled(p *PodInfo, nodes []*NodeInfo, start, want int) (*NodeInfo, int, error) {
	total := len(nodes)
	if total == 0 {
		return nil, 0, &FitError{Reasons: map[string]int{}}
	}
	start %= total
	a.prepare(p)
	feasible := a.feasible[:0]
	defer func() { a.feasible = feasible[:0] }()
	processed := 0
	for ; processed < total && len(feasible) < want; processed++ {
		n := nodes[(start+processed)%total]
		if a.firstFailure(p, n) == "" {
			feasible = append(feasible, n)
		}
	}
	next := (start + processed) % total
	if len(feasible) == 0 {
		// Every node was filtered and failed: only now are the reasons
		// counted. Most placements find a node, and building a reason
		// (a taint's is formatted) for each node they pass over cost
		// most of their allocations.
		return nil, next, a.fitError(p, nodes)
	}
	best := a.best[:0]
	defer func() { a.best = best[:0] }()
	bestScore := int64(-1)
	for _, n := range feasible {
		s := a.score(p, n)
		switch {
		case s > bestScore:
			bestScore, best = s, append(best[:0], n)
		case s == bestScore:
			best = append(best, n)
		}
	}
	return best[a.rng.IntN(len(best))], next, nil
}
