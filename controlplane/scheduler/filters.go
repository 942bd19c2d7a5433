package scheduler

import (
	"fmt"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// A Filter says why a node cannot run a pod ("" when it can). Reasons use
// kube-scheduler's wording, since operators search for them.
//
// Relevant is the filter's PreFilter-Skip (kube-scheduler's framework):
// asked once per pod, false means Check could pass every node for this
// pod, so it is not run for any. A nil Relevant means the filter concerns
// every pod. The scheduler's fast path is exactly this: a plain pod runs
// only the filters relevant to it, so a new filter is never skipped unless
// it says so itself.
type Filter struct {
	Name     string
	Relevant func(p *PodInfo) bool
	Check    func(p *PodInfo, n *NodeInfo) string
}

// DefaultFilters are run in order; the first failing one gives the reason.
// Add a filter with one line here (or in Config.Filters for one scheduler).
var DefaultFilters = []Filter{
	{"NodeName", hasNodeName, filterNodeName},
	{"NodeReady", nil, filterNodeReady},
	{"NodeUnschedulable", nil, filterUnschedulable},
	{"NodeAffinity", hasRequiredNodeAffinity, filterNodeAffinity},
	{"TaintToleration", nil, filterTaints},
	{"NodeResourcesFit", nil, filterResources},
	{"NodePorts", hasHostPorts, filterHostPorts},
	{"HostPathConflict", hasHostPaths, filterHostPaths},
}

func hasNodeName(p *PodInfo) bool { return p.Pod.GetSpec().GetNodeName() != "" }

func hasRequiredNodeAffinity(p *PodInfo) bool {
	spec := p.Pod.GetSpec()
	return len(spec.GetNodeSelector()) > 0 ||
		len(spec.GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution().GetNodeSelectorTerms()) > 0
}

func hasHostPorts(p *PodInfo) bool { return len(p.HostPorts) > 0 }

func hasHostPaths(p *PodInfo) bool { return len(p.HostPaths) > 0 }

func filterNodeName(p *PodInfo, n *NodeInfo) string {
	if want := p.Pod.GetSpec().GetNodeName(); want != "" && want != n.Name() {
		return "node(s) didn't match the requested node name"
	}
	return ""
}

func filterNodeReady(_ *PodInfo, n *NodeInfo) string {
	if !n.ready {
		return "node(s) were not ready"
	}
	return ""
}

func filterUnschedulable(p *PodInfo, n *NodeInfo) string {
	if !n.unschedulable {
		return ""
	}
	t := &apiv1.Taint{Key: "node.kubernetes.io/unschedulable", Effect: "NoSchedule"}
	if tolerated(p.Pod.GetSpec().GetTolerations(), t) {
		return ""
	}
	return "node(s) were unschedulable"
}

func filterNodeAffinity(p *PodInfo, n *NodeInfo) string {
	labels := n.labels
	for k, v := range p.Pod.GetSpec().GetNodeSelector() {
		if labels[k] != v {
			return "node(s) didn't match Pod's node affinity/selector"
		}
	}
	req := p.Pod.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution()
	if req == nil || len(req.GetNodeSelectorTerms()) == 0 {
		return ""
	}
	// Terms are ORed; requirements within a term are ANDed.
	for _, term := range req.GetNodeSelectorTerms() {
		if apiv1.NodeSelectorTermMatches(term, n.Node) {
			return ""
		}
	}
	return "node(s) didn't match Pod's node affinity/selector"
}

func filterTaints(p *PodInfo, n *NodeInfo) string {
	for i, t := range n.taints {
		if !tolerated(p.Pod.GetSpec().GetTolerations(), t) {
			return n.taintReasons[i]
		}
	}
	return ""
}

// untoleratedReason is filterTaints' reason for taint t, formatted once per
// node: a tainted node is passed over by most pods, hundreds of times a
// second.
func untoleratedReason(t *apiv1.Taint) string {
	return fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.GetKey(), t.GetValue())
}

// tolerated reports whether any toleration matches the taint.
func tolerated(tols []*apiv1.Toleration, t *apiv1.Taint) bool {
	for _, tol := range tols {
		if ToleratesTaint(tol, t) {
			return true
		}
	}
	return false
}

// ToleratesTaint is Kubernetes' matching: an empty effect matches every
// effect; operator Exists with an empty key matches every taint.
func ToleratesTaint(tol *apiv1.Toleration, t *apiv1.Taint) bool {
	if tol.GetEffect() != "" && tol.GetEffect() != t.GetEffect() {
		return false
	}
	if tol.GetKey() != "" && tol.GetKey() != t.GetKey() {
		return false
	}
	switch tol.GetOperator() {
	case "Exists":
		return true
	case "", "Equal":
		return tol.GetKey() != "" && tol.GetValue() == t.GetValue()
	}
	return false
}

func filterResources(p *PodInfo, n *NodeInfo) string {
	free := n.Allocatable.sub(n.Requested)
	switch {
	case free.Pods < 1:
		return "Too many pods"
	case p.Requests.MilliCPU > free.MilliCPU:
		return "Insufficient cpu"
	case p.Requests.Memory > free.Memory:
		return "Insufficient memory"
	}
	return ""
}

func filterHostPorts(p *PodInfo, n *NodeInfo) string {
	for _, hp := range p.HostPorts {
		for used := range n.hostPorts {
			// 0.0.0.0 (or empty) conflicts with every address.
			sameIP := hp.ip == used.ip || hp.ip == "" || used.ip == "" || hp.ip == "0.0.0.0" || used.ip == "0.0.0.0"
			if used.port == hp.port && used.protocol == hp.protocol && sameIP {
				return "node(s) didn't have free ports for the requested pod ports"
			}
		}
	}
	return ""
}

func filterHostPaths(p *PodInfo, n *NodeInfo) string {
	for _, path := range p.HostPaths {
		if n.hostPaths[path] > 0 {
			return "node(s) had a hostPath volume conflict"
		}
	}
	return ""
}
