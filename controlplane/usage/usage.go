package usage

import (
	"context"
	"sort"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// MaxAge: a sample older than this is no longer a node's usage (its agent
// stopped reporting) and is left out, as metrics-server drops stale nodes.
const MaxAge = 2 * time.Minute

// Container is one container's usage.
type Container struct {
	Name        string
	CPUMilli    int64
	MemoryBytes int64
}

// Pod is one pod's usage (the sum of its containers').
type Pod struct {
	Namespace, Name, UID, Node string
	CPUMilli                   int64
	MemoryBytes                int64
	Containers                 []Container
	Timestamp                  time.Time
	Window                     time.Duration
}

// Node is one node's usage, with its allocatable CPU and memory when the
// Node object was read (0 otherwise).
type Node struct {
	Name                  string
	CPUMilli, MemoryBytes int64
	// AllocatableCPUMilli and AllocatableMemoryBytes are the Node's
	// status.allocatable (the denominators of kubectl top's percentages).
	AllocatableCPUMilli, AllocatableMemoryBytes int64
	Timestamp                                   time.Time
	Window                                      time.Duration
	// Pods are the pods running on the node in the same sample.
	Pods []Pod
}

func quantity(m map[string]string, k string) (milli, value int64) {
	q, err := apiv1.ParseQuantity(m[k])
	if err != nil {
		return 0, 0
	}
	return q.MilliValue(), q.Value()
}

// FromNodeMetrics decodes one sample.
func FromNodeMetrics(m *apiv1.NodeMetrics) Node {
	ts, _ := time.Parse(time.RFC3339, m.GetTimestamp())
	win, _ := time.ParseDuration(m.GetWindow())
	n := Node{Name: m.GetMetadata().GetName(), Timestamp: ts, Window: win}
	n.CPUMilli, _ = quantity(m.GetUsage(), "cpu")
	_, n.MemoryBytes = quantity(m.GetUsage(), "memory")
	for _, p := range m.GetPods() {
		pu := Pod{Namespace: p.GetNamespace(), Name: p.GetName(), UID: p.GetUid(), Node: n.Name, Timestamp: ts, Window: win}
		pu.CPUMilli, _ = quantity(p.GetUsage(), "cpu")
		_, pu.MemoryBytes = quantity(p.GetUsage(), "memory")
		for _, c := range p.GetContainers() {
			cu := Container{Name: c.GetName()}
			cu.CPUMilli, _ = quantity(c.GetUsage(), "cpu")
			_, cu.MemoryBytes = quantity(c.GetUsage(), "memory")
			pu.Containers = append(pu.Containers, cu)
		}
		n.Pods = append(n.Pods, pu)
	}
	return n
}

// Fresh reports whether a sample taken at ts is still a usage at now.
func Fresh(ts, now time.Time) bool { return !ts.IsZero() && now.Sub(ts) <= MaxAge }

// Nodes reads every node's latest fresh sample, by name, with the Nodes'
// allocatable resources.
func Nodes(ctx context.Context, c *client.Client) ([]Node, error) {
	ms, _, err := client.List[*apiv1.NodeMetrics](ctx, c, client.ListOptions{})
	if err != nil {
		return nil, err
	}
	nodes, _, err := client.List[*apiv1.Node](ctx, c, client.ListOptions{})
	if err != nil {
		return nil, err
	}
	alloc := map[string]map[string]string{}
	for _, n := range nodes {
		alloc[n.GetMetadata().GetName()] = n.GetStatus().GetAllocatable()
	}
	now := time.Now()
	var out []Node
	for _, m := range ms {
		n := FromNodeMetrics(m)
		if !Fresh(n.Timestamp, now) {
			continue
		}
		a, ok := alloc[n.Name]
		if !ok {
			continue // the Node is gone
		}
		n.AllocatableCPUMilli, _ = quantity(a, "cpu")
		_, n.AllocatableMemoryBytes = quantity(a, "memory")
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Pods reads the usage of the pods in namespace ("" for all), by
// namespace and name, from every node's latest fresh sample.
func Pods(ctx context.Context, c *client.Client, namespace string) ([]Pod, error) {
	ms, _, err := client.List[*apiv1.NodeMetrics](ctx, c, client.ListOptions{})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Pod
	for _, m := range ms {
		n := FromNodeMetrics(m)
		if !Fresh(n.Timestamp, now) {
			continue
		}
		for _, p := range n.Pods {
			if namespace == "" || p.Namespace == namespace {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Latest reads every node's latest fresh sample through an API client
// (the dashboard's in-process one, which asks as the session's user), by
// node name.
func Latest(ctx context.Context, api apiv1.APIClient) (map[string]Node, error) {
	out := map[string]Node{}
	now := time.Now()
	req := &apiv1.ListRequest{Kind: "NodeMetrics", Limit: 500}
	for {
		l, err := api.List(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, env := range l.GetItems() {
			o, err := client.Unpack(env)
			if err != nil {
				return nil, err
			}
			if m, ok := o.(*apiv1.NodeMetrics); ok {
				if n := FromNodeMetrics(m); Fresh(n.Timestamp, now) {
					out[n.Name] = n
				}
			}
		}
		if req.Continue = l.GetMetadata().GetContinue(); req.Continue == "" {
			return out, nil
		}
	}
}
