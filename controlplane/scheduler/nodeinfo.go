package scheduler

import (
	"fmt"
	"hash/maphash"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Resources are the amounts the scheduler accounts: millicores, bytes and
// a pod count.
type Resources struct {
	MilliCPU int64
	Memory   int64
	Pods     int64
}

func (r Resources) add(o Resources) Resources {
	return Resources{r.MilliCPU + o.MilliCPU, r.Memory + o.Memory, r.Pods + o.Pods}
}

func (r Resources) sub(o Resources) Resources {
	return Resources{r.MilliCPU - o.MilliCPU, r.Memory - o.Memory, r.Pods - o.Pods}
}

// PodInfo is a pod with what scheduling needs precomputed once.
type PodInfo struct {
	Pod       *apiv1.Pod
	Requests  Resources
	HostPorts []hostPort
	HostPaths []string
	// Owner is "<kind>/<namespace>/<name>" of the controlling owner, or "".
	Owner string
	// ownerHash identifies Owner in NodeInfo's per-owner counts.
	ownerHash uint64
}

// ownerSeed hashes owners for the whole process: counts are compared
// across nodes, so every NodeInfo must use the same seed.
var ownerSeed = maphash.MakeSeed()

type hostPort struct {
	protocol string
	ip       string
	port     int32
}

// NewPodInfo computes a pod's requests as Kubernetes does: the sum over
// app containers, at least the largest init container, plus overhead.
func NewPodInfo(p *apiv1.Pod) (*PodInfo, error) {
	pi := &PodInfo{Pod: p, Requests: Resources{Pods: 1}}
	spec := p.GetSpec()
	for _, c := range spec.GetContainers() {
		r, err := requestsOf(c.GetResources().GetRequests())
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", c.GetName(), err)
		}
		pi.Requests.MilliCPU += r.MilliCPU
		pi.Requests.Memory += r.Memory
		for _, port := range c.GetPorts() {
			if port.GetHostPort() > 0 {
				proto := port.GetProtocol()
				if proto == "" {
					proto = "TCP"
				}
				pi.HostPorts = append(pi.HostPorts, hostPort{protocol: proto, ip: port.GetHostIP(), port: port.GetHostPort()})
			}
		}
	}
	for _, c := range spec.GetInitContainers() {
		r, err := requestsOf(c.GetResources().GetRequests())
		if err != nil {
			return nil, fmt.Errorf("init container %s: %w", c.GetName(), err)
		}
		pi.Requests.MilliCPU = max(pi.Requests.MilliCPU, r.MilliCPU)
		pi.Requests.Memory = max(pi.Requests.Memory, r.Memory)
	}
	over, err := requestsOf(spec.GetOverhead())
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	pi.Requests.MilliCPU += over.MilliCPU
	pi.Requests.Memory += over.Memory
	for _, v := range spec.GetVolumes() {
		if hp := v.GetHostPath(); hp != nil {
			pi.HostPaths = append(pi.HostPaths, hp.GetPath())
		}
	}
	for _, ref := range p.GetMetadata().GetOwnerReferences() {
		if ref.GetController() {
			pi.Owner = ref.GetKind() + "/" + p.GetMetadata().GetNamespace() + "/" + ref.GetName()
			pi.ownerHash = maphash.String(ownerSeed, pi.Owner)
		}
	}
	return pi, nil
}

func requestsOf(m map[string]string) (Resources, error) {
	var r Resources
	for name, v := range m {
		q, err := kinds.ParseQuantity(v)
		if err != nil {
			return r, fmt.Errorf("%s %q: %w", name, v, err)
		}
		switch name {
		case "cpu":
			r.MilliCPU = q.MilliValue()
		case "memory":
			r.Memory = q.Value()
		case "pods":
			r.Pods = q.Value()
		}
	}
	return r, nil
}

// NodeInfo is a node with the pods bound (or assumed) to it.
type NodeInfo struct {
	// Node is the latest object seen. It is replaced in place only by
	// changes that do not matter to scheduling (heartbeats), so the fields
	// below, derived once, stay true for it; a relevant change builds a new
	// NodeInfo. Filters read the derived fields because they run for
	// hundreds of nodes per pod and walking each node's protobuf (scattered
	// in memory) dominated placement time in profiles.
	Node          *apiv1.Node
	name          string
	ready         bool
	unschedulable bool
	labels        map[string]string
	// taints are the NoSchedule/NoExecute taints; preferTaints the
	// PreferNoSchedule ones.
	taints, preferTaints []*apiv1.Taint
	// taintReasons[i] is filterTaints' reason for taints[i].
	taintReasons []string
	Allocatable  Resources
	Requested    Resources
	// ownerMask has bit hash%64 set for each owner in owners: most nodes
	// hold no pod of the owner being placed, and the mask (beside the
	// fields the filters just read) answers that without loading the
	// slice, whose cache miss was most of spreading's cost.
	ownerMask uint64
	hostPorts map[hostPort]int
	hostPaths map[string]int
	// owners counts pods per controlling owner (by hash), a short slice
	// rather than a map: spreading reads it for hundreds of nodes per pod,
	// and one contiguous scan beats a map's scattered buckets there.
	owners []ownerCount
	// pods holds the keys of the pods counted here, so removal is exact.
	pods map[string]*PodInfo
	// priorities counts the pods per priority (few distinct values), so
	// preemption skips at once a node with nothing of lower priority.
	priorities map[int32]int
}

// NewNodeInfo reads a node's allocatable (falling back to capacity).
func NewNodeInfo(n *apiv1.Node) (*NodeInfo, error) {
	alloc := n.GetStatus().GetAllocatable()
	if len(alloc) == 0 {
		alloc = n.GetStatus().GetCapacity()
	}
	r, err := requestsOf(alloc)
	if err != nil {
		return nil, fmt.Errorf("node %s allocatable: %w", n.GetMetadata().GetName(), err)
	}
	if _, ok := alloc["pods"]; !ok {
		r.Pods = 110 // Kubernetes' default max pods per node
	}
	ni := &NodeInfo{Node: n, name: n.GetMetadata().GetName(), ready: apiv1.NodeIsReady(n), unschedulable: n.GetSpec().GetUnschedulable(),
		labels: n.GetMetadata().GetLabels(), Allocatable: r,
		hostPorts: map[hostPort]int{}, hostPaths: map[string]int{}, pods: map[string]*PodInfo{}, priorities: map[int32]int{}}
	for _, t := range n.GetSpec().GetTaints() {
		switch t.GetEffect() {
		case "NoSchedule", "NoExecute":
			ni.taints = append(ni.taints, t)
			ni.taintReasons = append(ni.taintReasons, untoleratedReason(t))
		case "PreferNoSchedule":
			ni.preferTaints = append(ni.preferTaints, t)
		}
	}
	return ni, nil
}

// Name is the node's name.
func (ni *NodeInfo) Name() string { return ni.name }

func podKey(p *apiv1.Pod) string {
	return p.GetMetadata().GetNamespace() + "/" + p.GetMetadata().GetName()
}

// AddPod counts a pod bound or assumed to this node (idempotent per pod).
func (ni *NodeInfo) AddPod(pi *PodInfo) {
	k := podKey(pi.Pod)
	if _, ok := ni.pods[k]; ok {
		return
	}
	ni.pods[k] = pi
	ni.priorities[Priority(pi.Pod)]++
	ni.Requested = ni.Requested.add(pi.Requests)
	for _, hp := range pi.HostPorts {
		ni.hostPorts[hp]++
	}
	for _, p := range pi.HostPaths {
		ni.hostPaths[p]++
	}
	if pi.Owner != "" {
		ni.addOwner(pi.ownerHash, 1)
	}
}

// RemovePod uncounts a pod.
func (ni *NodeInfo) RemovePod(p *apiv1.Pod) {
	k := podKey(p)
	pi, ok := ni.pods[k]
	if !ok {
		return
	}
	delete(ni.pods, k)
	if pr := Priority(pi.Pod); ni.priorities[pr] <= 1 {
		delete(ni.priorities, pr)
	} else {
		ni.priorities[pr]--
	}
	ni.Requested = ni.Requested.sub(pi.Requests)
	for _, hp := range pi.HostPorts {
		if ni.hostPorts[hp]--; ni.hostPorts[hp] <= 0 {
			delete(ni.hostPorts, hp)
		}
	}
	for _, p := range pi.HostPaths {
		if ni.hostPaths[p]--; ni.hostPaths[p] <= 0 {
			delete(ni.hostPaths, p)
		}
	}
	if pi.Owner != "" {
		ni.addOwner(pi.ownerHash, -1)
	}
}

// PodCount is the number of pods counted on the node.
func (ni *NodeInfo) PodCount() int { return len(ni.pods) }

type ownerCount struct {
	hash uint64
	n    int32
}

func ownerBit(h uint64) uint64 { return 1 << (h % 64) }

func (ni *NodeInfo) addOwner(h uint64, d int32) {
	for i := range ni.owners {
		if ni.owners[i].hash == h {
			ni.owners[i].n += d
			if ni.owners[i].n <= 0 {
				last := len(ni.owners) - 1
				ni.owners[i] = ni.owners[last]
				ni.owners = ni.owners[:last]
				ni.ownerMask = 0
				for _, o := range ni.owners {
					ni.ownerMask |= ownerBit(o.hash)
				}
			}
			return
		}
	}
	if d > 0 {
		ni.owners = append(ni.owners, ownerCount{hash: h, n: d})
		ni.ownerMask |= ownerBit(h)
	}
}

// ownerPods is how many pods of the owner with hash h the node counts.
func (ni *NodeInfo) ownerPods(h uint64) int32 {
	if ni.ownerMask&ownerBit(h) == 0 {
		return 0
	}
	for _, o := range ni.owners {
		if o.hash == h {
			return o.n
		}
	}
	return 0
}
