package scheduler

import apiv1 "github.com/skiffhq/skiff/proto/api/v1"

// A Score ranks a feasible node for a pod from 0 (worst) to MaxScore.
//
// Relevant is the score's PreScore-Skip: asked once per pod, false means
// Rate would give every node the same value for this pod, so it cannot
// change the ranking and is not run. A nil Relevant means always.
type Score struct {
	Name     string
	Weight   int64
	Relevant func(p *PodInfo) bool
	Rate     func(p *PodInfo, n *NodeInfo) int64
}

// MaxScore is the best a single score gives.
const MaxScore = 100

// DefaultScores are summed with their weights. Add a score with one line
// here (or in Config.Scores for one scheduler).
var DefaultScores = []Score{
	{"LeastRequested", 1, nil, scoreLeastRequested},
	{"BalancedAllocation", 1, nil, scoreBalanced},
	{"SelectorSpread", 2, hasOwner, scoreSpread},
	{"NodeAffinityPreferred", 2, prefersNodes, scorePreferredAffinity},
	{"TaintPreferNoSchedule", 1, nil, scorePreferNoSchedule},
}

func hasOwner(p *PodInfo) bool { return p.Owner != "" }

func prefersNodes(p *PodInfo) bool {
	return len(p.Pod.GetSpec().GetAffinity().GetNodeAffinity().GetPreferredDuringSchedulingIgnoredDuringExecution()) > 0
}

// after is the node's usage fraction (0..1) of cpu and memory with the pod.
func after(p *PodInfo, n *NodeInfo) (cpu, mem float64) {
	if n.Allocatable.MilliCPU > 0 {
		cpu = float64(n.Requested.MilliCPU+p.Requests.MilliCPU) / float64(n.Allocatable.MilliCPU)
	}
	if n.Allocatable.Memory > 0 {
		mem = float64(n.Requested.Memory+p.Requests.Memory) / float64(n.Allocatable.Memory)
	}
	return min(cpu, 1), min(mem, 1)
}

func scoreLeastRequested(p *PodInfo, n *NodeInfo) int64 {
	cpu, mem := after(p, n)
	return int64(((1-cpu)+(1-mem))/2*MaxScore + 0.5)
}

func scoreBalanced(p *PodInfo, n *NodeInfo) int64 {
	cpu, mem := after(p, n)
	d := cpu - mem
	if d < 0 {
		d = -d
	}
	return int64((1-d)*MaxScore + 0.5)
}

// scoreSpread favours nodes with fewer pods of the same owner.
func scoreSpread(p *PodInfo, n *NodeInfo) int64 {
	if p.Owner == "" {
		return MaxScore
	}
	same := int64(n.ownerPods(p.ownerHash))
	return MaxScore / (1 + same)
}

func scorePreferredAffinity(p *PodInfo, n *NodeInfo) int64 {
	prefs := p.Pod.GetSpec().GetAffinity().GetNodeAffinity().GetPreferredDuringSchedulingIgnoredDuringExecution()
	if len(prefs) == 0 {
		return 0
	}
	var total, got int64
	for _, pref := range prefs {
		total += int64(pref.GetWeight())
		if pref.GetPreference() != nil && apiv1.NodeSelectorTermMatches(pref.GetPreference(), n.Node) {
			got += int64(pref.GetWeight())
		}
	}
	if total == 0 {
		return 0
	}
	return got * MaxScore / total
}

func scorePreferNoSchedule(p *PodInfo, n *NodeInfo) int64 {
	bad := int64(0)
	for _, t := range n.preferTaints {
		if !tolerated(p.Pod.GetSpec().GetTolerations(), t) {
			bad++
		}
	}
	return MaxScore / (1 + bad)
}
