package node

import (
	"context"
	"errors"

	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/usage"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// errNoUsage: no node has a fresh usage sample; the dashboard then shows
// what the pods request.
var errNoUsage = errors.New("no node has reported its usage in the last " + usage.MaxAge.String())

// measuredUsage is the dashboard's usage source: the agents' NodeMetrics
// (cgroup readings, what ctl top shows), read through api as the
// session's user, against each Node's allocatable.
func measuredUsage(api apiv1.APIClient) dashboard.UsageSource {
	return dashboard.UsageFunc(func(ctx context.Context, nodes []*apiv1.Node, _ []*apiv1.Pod) (map[string]dashboard.Usage, error) {
		latest, err := usage.Latest(ctx, api)
		if err != nil {
			return nil, err
		}
		if len(latest) == 0 {
			return nil, errNoUsage
		}
		out := map[string]dashboard.Usage{}
		for _, n := range nodes {
			u, ok := latest[n.GetMetadata().GetName()]
			if !ok {
				continue
			}
			alloc := n.GetStatus().GetAllocatable()
			out[u.Name] = dashboard.Usage{CPUMilli: u.CPUMilli, MemoryBytes: u.MemoryBytes,
				AllocatableCPUMilli: quantityMilli(alloc["cpu"]), AllocatableMemory: quantityValue(alloc["memory"]), Measured: true}
		}
		return out, nil
	})
}

func quantityMilli(s string) int64 {
	q, err := apiv1.ParseQuantity(s)
	if err != nil {
		return 0
	}
	return q.MilliValue()
}

func quantityValue(s string) int64 {
	q, err := apiv1.ParseQuantity(s)
	if err != nil {
		return 0
	}
	return q.Value()
}
