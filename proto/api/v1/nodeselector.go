package apiv1

import "strconv"

// NodeSelectorMatches reports whether node satisfies one of sel's terms
// (terms are ORed, the requirements of a term ANDed), as Kubernetes'
// scheduler decides required node affinity; a nil selector matches
// nothing. One implementation for the scheduler and the node agent.
func NodeSelectorMatches(sel *NodeSelector, node *Node) bool {
	for _, term := range sel.GetNodeSelectorTerms() {
		if NodeSelectorTermMatches(term, node) {
			return true
		}
	}
	return false
}

// NodeSelectorTermMatches reports whether node satisfies every
// requirement of term (an empty term matches nothing, as in Kubernetes):
// In, NotIn, Exists, DoesNotExist, Gt and Lt on labels, and matchFields
// on metadata.name.
func NodeSelectorTermMatches(term *NodeSelectorTerm, n *Node) bool {
	if len(term.GetMatchExpressions()) == 0 && len(term.GetMatchFields()) == 0 {
		return false // an empty term matches nothing, as in Kubernetes
	}
	labels := n.GetMetadata().GetLabels()
	for _, r := range term.GetMatchExpressions() {
		v, has := labels[r.GetKey()]
		if !requirementMatches(r, v, has) {
			return false
		}
	}
	for _, r := range term.GetMatchFields() {
		if r.GetKey() != "metadata.name" || !requirementMatches(r, n.GetMetadata().GetName(), true) {
			return false
		}
	}
	return true
}

func requirementMatches(r *NodeSelectorRequirement, v string, has bool) bool {
	in := func() bool {
		for _, x := range r.GetValues() {
			if x == v {
				return true
			}
		}
		return false
	}
	switch r.GetOperator() {
	case "In":
		return has && in()
	case "NotIn":
		return !has || !in()
	case "Exists":
		return has
	case "DoesNotExist":
		return !has
	case "Gt", "Lt":
		if !has || len(r.GetValues()) != 1 {
			return false
		}
		a, err1 := strconv.ParseInt(v, 10, 64)
		b, err2 := strconv.ParseInt(r.GetValues()[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.GetOperator() == "Gt" {
			return a > b
		}
		return a < b
	}
	return false
}
