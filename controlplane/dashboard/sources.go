package dashboard

import (
	"context"
	"errors"
	"io"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Usage is what one node uses (or, from the default source, what its pods
// request), next to what it can give.
type Usage struct {
	CPUMilli, MemoryBytes                  int64
	AllocatableCPUMilli, AllocatableMemory int64
	// Measured is true for real usage, false for the sum of requests.
	Measured bool
}

// UsageSource reports nodes' CPU and memory. ctx carries the session's
// caller: a source that asks the API (the metrics API) asks as that caller.
// The nodes page asks once per render and, when a source is set, every
// UsageRefresh while it is open.
type UsageSource interface {
	NodeUsage(ctx context.Context, nodes []*apiv1.Node, pods []*apiv1.Pod) (map[string]Usage, error)
}

// UsageRefresh is how often an open nodes page re-reads a UsageSource
// (measured usage changes without a watch event).
const UsageRefresh = 10 * time.Second

// requestedUsage is the default UsageSource: what the pods bound to each
// node request, against the node's allocatable — all of it from the
// objects the page already watches.
type requestedUsage struct{}

func (requestedUsage) NodeUsage(_ context.Context, nodes []*apiv1.Node, pods []*apiv1.Pod) (map[string]Usage, error) {
	out := make(map[string]Usage, len(nodes))
	for _, n := range nodes {
		u := Usage{}
		alloc := n.GetStatus().GetAllocatable()
		if len(alloc) == 0 {
			alloc = n.GetStatus().GetCapacity()
		}
		u.AllocatableCPUMilli = milli(alloc["cpu"])
		u.AllocatableMemory = value(alloc["memory"])
		out[n.GetMetadata().GetName()] = u
	}
	for _, p := range pods {
		node := p.GetSpec().GetNodeName()
		u, ok := out[node]
		if !ok || terminal(p) {
			continue
		}
		for _, c := range p.GetSpec().GetContainers() {
			req := c.GetResources().GetRequests()
			u.CPUMilli += milli(req["cpu"])
			u.MemoryBytes += value(req["memory"])
		}
		out[node] = u
	}
	return out, nil
}

func terminal(p *apiv1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph == "Succeeded" || ph == "Failed"
}

func milli(s string) int64 {
	if s == "" {
		return 0
	}
	q, err := apiv1.ParseQuantity(s)
	if err != nil {
		return 0
	}
	return q.MilliValue()
}

func value(s string) int64 {
	if s == "" {
		return 0
	}
	q, err := apiv1.ParseQuantity(s)
	if err != nil {
		return 0
	}
	return q.Value()
}

// ErrLogsUnavailable is the default LogSource's answer.
var ErrLogsUnavailable = errors.New("logs are not available on this build (the API has no log stream yet)")

// LogSource streams a container's log. ctx carries the session's caller
// (a source calling the API's log stream calls it as that caller, so the
// API decides who may read which pod's logs). The stream ends when ctx
// ends or, without follow, at the end of the log.
type LogSource interface {
	Logs(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error)
}

type noLogs struct{}

func (noLogs) Logs(context.Context, string, string, string, bool) (io.ReadCloser, error) {
	return nil, ErrLogsUnavailable
}

// UsageFunc is a UsageSource made of a function.
type UsageFunc func(ctx context.Context, nodes []*apiv1.Node, pods []*apiv1.Pod) (map[string]Usage, error)

// NodeUsage calls f.
func (f UsageFunc) NodeUsage(ctx context.Context, nodes []*apiv1.Node, pods []*apiv1.Pod) (map[string]Usage, error) {
	return f(ctx, nodes, pods)
}

// LogsFunc is a LogSource made of a function.
type LogsFunc func(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error)

// Logs calls f.
func (f LogsFunc) Logs(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error) {
	return f(ctx, namespace, pod, container, follow)
}
