package scheduler

import (
	"math"
	"sync"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// cache is one leadership term's view for scheduling: every node with the
// pods bound (or assumed) to it, and the pods waiting for a node. It is
// rebuilt from the informers' first lists at each start, so pods bound by
// an earlier leader count at once.
type cache struct {
	mu       sync.Mutex
	nodes    map[string]*NodeInfo
	nodeList []*NodeInfo // stable order for sampled placement
	// podNode: which node a pod is counted on (bound or assumed).
	podNode map[string]*NodeInfo
	// orphans are bound pods whose node is not (yet) in the cache.
	orphans map[string]map[string]*PodInfo
	// pending are pods waiting for a node, by key.
	pending map[string]*apiv1.Pod
	// assumed: pods placed by this scheduler whose bind is in flight or
	// not yet seen by the informer; the value identifies the attempt.
	assumed map[string]uint64
	// unschedulable pods wait for a cluster change or the periodic retry.
	unschedulable map[string]bool
	// prioritized are pending pods with a priority above 0, so a placement
	// takes the most important pending pod first without scanning all
	// pending ones (entries no longer pending are dropped when met).
	prioritized map[string]struct{}
	// preempting: the victims (pod keys) each preemptor evicted; it does
	// not preempt again while one of them is still counted on its node.
	preempting map[string][]string
}

func newCache() *cache {
	return &cache{nodes: map[string]*NodeInfo{}, podNode: map[string]*NodeInfo{}, orphans: map[string]map[string]*PodInfo{},
		pending: map[string]*apiv1.Pod{}, assumed: map[string]uint64{}, unschedulable: map[string]bool{},
		prioritized: map[string]struct{}{}, preempting: map[string][]string{}}
}

// counts: a bound pod uses its node's resources until it ends.
func counts(p *apiv1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return p.GetSpec().GetNodeName() != "" && ph != "Succeeded" && ph != "Failed"
}

// setNode adds or updates a node; it reports whether the node may now fit
// pods it did not before (new, more allocatable, readiness, taints,
// labels, schedulability changed) — heartbeats alone do not.
func (c *cache) setNode(n *apiv1.Node) (changed bool, err error) {
	name := n.GetMetadata().GetName()
	old := c.nodes[name]
	if old != nil && !schedulingRelevantChange(old.Node, n) {
		old.Node = n
		return false, nil
	}
	ni, err := NewNodeInfo(n)
	if err != nil {
		return false, err
	}
	if old != nil {
		for _, pi := range old.pods {
			ni.AddPod(pi)
			c.podNode[podKey(pi.Pod)] = ni
		}
		for i, x := range c.nodeList {
			if x == old {
				c.nodeList[i] = ni
			}
		}
	} else {
		c.nodeList = append(c.nodeList, ni)
	}
	c.nodes[name] = ni
	for k, pi := range c.orphans[name] {
		ni.AddPod(pi)
		c.podNode[k] = ni
	}
	delete(c.orphans, name)
	return true, nil
}

func schedulingRelevantChange(old, cur *apiv1.Node) bool {
	if apiv1.NodeIsReady(old) != apiv1.NodeIsReady(cur) || old.GetSpec().GetUnschedulable() != cur.GetSpec().GetUnschedulable() {
		return true
	}
	if !mapsEqual(old.GetStatus().GetAllocatable(), cur.GetStatus().GetAllocatable()) ||
		!mapsEqual(old.GetStatus().GetCapacity(), cur.GetStatus().GetCapacity()) ||
		!mapsEqual(old.GetMetadata().GetLabels(), cur.GetMetadata().GetLabels()) {
		return true
	}
	ot, ct := old.GetSpec().GetTaints(), cur.GetSpec().GetTaints()
	if len(ot) != len(ct) {
		return true
	}
	for i := range ot {
		if ot[i].GetKey() != ct[i].GetKey() || ot[i].GetValue() != ct[i].GetValue() || ot[i].GetEffect() != ct[i].GetEffect() {
			return true
		}
	}
	return false
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (c *cache) removeNode(name string) {
	ni := c.nodes[name]
	if ni == nil {
		return
	}
	delete(c.nodes, name)
	for i, x := range c.nodeList {
		if x == ni {
			last := len(c.nodeList) - 1
			c.nodeList[i] = c.nodeList[last]
			c.nodeList = c.nodeList[:last]
			break
		}
	}
	// Its pods stay counted as orphans in case the node comes back.
	if len(ni.pods) > 0 {
		c.orphans[name] = map[string]*PodInfo{}
		for k, pi := range ni.pods {
			c.orphans[name][k] = pi
			delete(c.podNode, k)
		}
	}
}

// countPod counts a bound pod on its node (moving it if it was counted
// elsewhere, e.g. assumed on another node by a deposed leader's race).
func (c *cache) countPod(p *apiv1.Pod) error {
	k := podKey(p)
	name := p.GetSpec().GetNodeName()
	if cur := c.podNode[k]; cur != nil {
		if cur.Name() == name {
			cur.pods[k].Pod = p
			return nil
		}
		cur.RemovePod(p)
		delete(c.podNode, k)
	}
	pi, err := NewPodInfo(p)
	if err != nil {
		return err
	}
	if ni := c.nodes[name]; ni != nil {
		ni.AddPod(pi)
		c.podNode[k] = ni
		return nil
	}
	if c.orphans[name] == nil {
		c.orphans[name] = map[string]*PodInfo{}
	}
	c.orphans[name][k] = pi
	return nil
}

// uncountPod forgets a pod's usage; it reports whether it was counted.
func (c *cache) uncountPod(p *apiv1.Pod) bool {
	k := podKey(p)
	if ni := c.podNode[k]; ni != nil {
		ni.RemovePod(p)
		delete(c.podNode, k)
		return true
	}
	for name, m := range c.orphans {
		if _, ok := m[k]; ok {
			delete(m, k)
			if len(m) == 0 {
				delete(c.orphans, name)
			}
			return true
		}
	}
	return false
}

// mostImportant is the pending pod to place next instead of key: the
// highest-priority one that is neither in flight nor unschedulable, key
// itself when none is more important. Each queued key still places one
// pod, and every pending pod keeps its own key queued, so each is placed.
func (c *cache) mostImportant(key string) string {
	if len(c.prioritized) == 0 {
		return key
	}
	best, bestPrio := key, int32(math.MinInt32)
	if p := c.pending[key]; p != nil && !c.unschedulable[key] {
		bestPrio = Priority(p)
	}
	for k := range c.prioritized {
		p := c.pending[k]
		if p == nil {
			delete(c.prioritized, k)
			continue
		}
		if _, inFlight := c.assumed[k]; inFlight || c.unschedulable[k] {
			continue
		}
		if pr := Priority(p); pr > bestPrio || (pr == bestPrio && k < best && best != key) {
			best, bestPrio = k, pr
		}
	}
	return best
}

// preemptionPending: victims the pod evicted are still counted on a node.
func (c *cache) preemptionPending(key string) bool {
	for _, v := range c.preempting[key] {
		if c.podNode[v] != nil {
			return true
		}
	}
	delete(c.preempting, key)
	return false
}
