package scheduler

import (
	"fmt"
	"math"
	"sort"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Priority is a pod's spec.priority (set at admission from its
// PriorityClass; 0 without one).
func Priority(p *apiv1.Pod) int32 { return p.GetSpec().GetPriority() }

// mayPreempt: a pod whose preemptionPolicy is Never waits instead.
func mayPreempt(p *apiv1.Pod) bool { return p.GetSpec().GetPreemptionPolicy() != "Never" }

// Preemption is the outcome of Preempt: the node the pod will fit on once
// the victims are gone.
type Preemption struct {
	Node    *NodeInfo
	Victims []*PodInfo
}

// Preempt finds, for a pod no node fits, the node where evicting
// lower-priority pods makes room with the fewest victims (ties: the lowest
// highest victim priority, then the lowest sum of victim priorities, as
// kube-scheduler's PostFilter ranks candidates), or nil. On each node it
// removes every lower-priority pod and, if the pod then fits, puts back as
// many as it can, highest priority first (the "reprieve"), so the victims
// are only the pods that must go. Terminating pods are never victims: they
// are leaving already. prepare(p) must have run (Place does it). The nodes
// are left as they were.
func (a *Algorithm) Preempt(p *PodInfo, nodes []*NodeInfo) *Preemption {
	prio := Priority(p.Pod)
	var best *Preemption
	var bestMax int32
	var bestSum int64
	for _, n := range nodes {
		victims, ok := a.victimsOn(p, prio, n)
		if !ok {
			continue
		}
		maxP, sum := int32(math.MinInt32), int64(0)
		for _, v := range victims {
			vp := Priority(v.Pod)
			maxP = max(maxP, vp)
			sum += int64(vp)
		}
		better := best == nil || len(victims) < len(best.Victims) ||
			(len(victims) == len(best.Victims) && (maxP < bestMax || (maxP == bestMax && sum < bestSum)))
		if better {
			best, bestMax, bestSum = &Preemption{Node: n, Victims: victims}, maxP, sum
		}
	}
	return best
}

// victimsOn is the smallest set of lower-priority pods whose removal lets p
// fit on n (ok false when even removing all of them does not).
func (a *Algorithm) victimsOn(p *PodInfo, prio int32, n *NodeInfo) (victims []*PodInfo, ok bool) {
	if !n.hasPriorityBelow(prio) {
		return nil, false // most nodes, for most pods: no pod scan at all
	}
	var lower []*PodInfo
	for _, pi := range n.pods {
		if Priority(pi.Pod) < prio && pi.Pod.GetMetadata().GetDeletionTimestamp() == "" {
			lower = append(lower, pi)
		}
	}
	if len(lower) == 0 {
		return nil, false
	}
	for _, pi := range lower {
		n.RemovePod(pi.Pod)
	}
	defer func() { // leave the node as it was
		for _, pi := range lower {
			n.AddPod(pi)
		}
	}()
	if a.firstFailure(p, n) != "" {
		return nil, false
	}
	// Reprieve the most important first; among equals, the older (kept
	// longer) first, then by name, so the choice is deterministic.
	sort.Slice(lower, func(i, j int) bool {
		pi, pj := Priority(lower[i].Pod), Priority(lower[j].Pod)
		if pi != pj {
			return pi > pj
		}
		ti, tj := lower[i].Pod.GetMetadata().GetCreationTimestamp(), lower[j].Pod.GetMetadata().GetCreationTimestamp()
		if ti != tj {
			return ti < tj
		}
		return podKey(lower[i].Pod) < podKey(lower[j].Pod)
	})
	for _, pi := range lower {
		n.AddPod(pi)
		if a.firstFailure(p, n) != "" {
			n.RemovePod(pi.Pod)
			victims = append(victims, pi)
		}
	}
	// The deferred restore re-adds every lower pod (AddPod is idempotent).
	return victims, true
}

// preemptionMessage is the preemptor's PodScheduled message while its
// victims terminate.
func preemptionMessage(fit string, pr *Preemption) string {
	return fmt.Sprintf("%s Preempting %d lower-priority pod(s) on node %s.", fit, len(pr.Victims), pr.Node.Name())
}

// hasPriorityBelow: some pod counted on the node has a lower priority.
func (ni *NodeInfo) hasPriorityBelow(prio int32) bool {
	for pr := range ni.priorities {
		if pr < prio {
			return true
		}
	}
	return false
}
