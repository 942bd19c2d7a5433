package scheduler

import (
	"fmt"
	"math"
	"sort"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Priority is a pod's spec.priority (set at admission from its
// PriorityClass; 0 without one).
func Priority(p *apiv1.Pod) int32 { return p.GetSpec().GetPriority() }

// mayPreempt: a pod whose preemptionPolicy is Never waits instead.
func mayPreempt(p *apiv1.Pod) bool { return p.GetSpec().GetPreemptionPolicy() != "Never" }

// Preemption is the outcome of Preempt: the node the pod will fit on once
// the victims are gone, and how many of the victims' evictions break a
// PodDisruptionBudget.
type Preemption struct {
	Node       *NodeInfo
	Victims    []*PodInfo
	Violations int
}

// Preempt finds, for a pod no node fits, the node where evicting
// lower-priority pods makes room, or nil. Candidates are ranked as
// kube-scheduler's DefaultPreemption ranks them: the fewest victims whose
// eviction breaks a PodDisruptionBudget (pdbs: the cluster's budgets, with
// the disruptions each allows now), then the lowest highest victim
// priority, then the lowest sum of victim priorities, then the fewest
// victims (then the node order, so every run picks the same). On each node
// it removes every lower-priority pod and, if the pod then fits, puts back
// as many as it can (the "reprieve"): first the pods whose eviction would
// break a budget, then the others, each group highest priority first, so
// the victims are only the pods that must go and as few budget-breaking
// ones as can be. Terminating pods are never victims: they are leaving
// already. prepare(p) must have run (Place does it). The nodes are left as
// they were.
func (a *Algorithm) Preempt(p *PodInfo, nodes []*NodeInfo, pdbs []*apiv1.PodDisruptionBudget) *Preemption {
	prio := Priority(p.Pod)
	var best *Preemption
	var bestMax int32
	var bestSum int64
	for _, n := range nodes {
		victims, violations, ok := a.victimsOn(p, prio, n, pdbs)
		if !ok {
			continue
		}
		maxP, sum := int32(math.MinInt32), int64(0)
		for _, v := range victims {
			vp := Priority(v.Pod)
			maxP = max(maxP, vp)
			sum += int64(vp)
		}
		better := best == nil
		if !better {
			switch {
			case violations != best.Violations:
				better = violations < best.Violations
			case maxP != bestMax:
				better = maxP < bestMax
			case sum != bestSum:
				better = sum < bestSum
			default:
				better = len(victims) < len(best.Victims)
			}
		}
		if better {
			best, bestMax, bestSum = &Preemption{Node: n, Victims: victims, Violations: violations}, maxP, sum
		}
	}
	return best
}

// victimsOn is the smallest set of lower-priority pods whose removal lets p
// fit on n, and how many of them break a budget (ok false when even
// removing all of them does not make room).
func (a *Algorithm) victimsOn(p *PodInfo, prio int32, n *NodeInfo, pdbs []*apiv1.PodDisruptionBudget) (victims []*PodInfo, violations int, ok bool) {
	if !n.hasPriorityBelow(prio) {
		return nil, 0, false // most nodes, for most pods: no pod scan at all
	}
	var lower []*PodInfo
	for _, pi := range n.pods {
		if Priority(pi.Pod) < prio && pi.Pod.GetMetadata().GetDeletionTimestamp() == "" {
			lower = append(lower, pi)
		}
	}
	if len(lower) == 0 {
		return nil, 0, false
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
		return nil, 0, false
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
	violating, free := splitByBudget(lower, pdbs)
	reprieve := func(pi *PodInfo) bool {
		n.AddPod(pi)
		if a.firstFailure(p, n) != "" {
			n.RemovePod(pi.Pod)
			victims = append(victims, pi)
			return false
		}
		return true
	}
	for _, pi := range violating {
		if !reprieve(pi) {
			violations++
		}
	}
	for _, pi := range free {
		reprieve(pi)
	}
	// The deferred restore re-adds every lower pod (AddPod is idempotent).
	return victims, violations, true
}

// splitByBudget divides pods (in their order) into those whose eviction,
// together with the ones before them, would take a PodDisruptionBudget
// below what it allows now, and the others, as kube-scheduler's
// filterPodsWithPDBViolation does: a budget selecting a pod counts one
// disruption for it, unless the pod is already listed in the budget's
// status.disruptedPods (its eviction is under way and counted); a budget
// with an empty selector selects nothing.
func splitByBudget(pods []*PodInfo, pdbs []*apiv1.PodDisruptionBudget) (violating, free []*PodInfo) {
	allowed := make([]int32, len(pdbs))
	for i, b := range pdbs {
		allowed[i] = b.GetStatus().GetDisruptionsAllowed()
	}
	for _, pi := range pods {
		md := pi.Pod.GetMetadata()
		broken := false
		for i, b := range pdbs {
			sel := b.GetSpec().GetSelector()
			if b.GetMetadata().GetNamespace() != md.GetNamespace() || sel == nil ||
				(len(sel.GetMatchLabels()) == 0 && len(sel.GetMatchExpressions()) == 0) || !kinds.SelectorMatches(sel, md.GetLabels()) {
				continue
			}
			if _, listed := b.GetStatus().GetDisruptedPods()[md.GetName()]; listed {
				continue
			}
			allowed[i]--
			if allowed[i] < 0 {
				broken = true
			}
		}
		if broken {
			violating = append(violating, pi)
		} else {
			free = append(free, pi)
		}
	}
	return violating, free
}

// preemptionMessage is the preemptor's PodScheduled message while its
// victims terminate.
func preemptionMessage(fit string, pr *Preemption) string {
	if pr.Violations > 0 {
		return fmt.Sprintf("%s Preempting %d lower-priority pod(s) on node %s (%d of them beyond what their PodDisruptionBudgets allow: no node had room otherwise).",
			fit, len(pr.Victims), pr.Node.Name(), pr.Violations)
	}
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

// budgets are the cached PodDisruptionBudgets.
func (s *Scheduler) budgets() []*apiv1.PodDisruptionBudget {
	objs := s.pdbs.List()
	out := make([]*apiv1.PodDisruptionBudget, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*apiv1.PodDisruptionBudget))
	}
	return out
}
