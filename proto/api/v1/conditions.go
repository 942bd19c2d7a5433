package apiv1

// NodeReadyCondition is a node's Ready condition, nil when it has none.
// Hand-written beside the generated types: the scheduler, node lifecycle,
// the agent and the hollow nodes all read it.
func NodeReadyCondition(n *Node) *NodeCondition {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c
		}
	}
	return nil
}

// NodeIsReady reports whether the node's Ready condition is True.
func NodeIsReady(n *Node) bool { return NodeReadyCondition(n).GetStatus() == "True" }
