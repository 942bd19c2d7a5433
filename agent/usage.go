package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/logkey"
)

// UsageReader is the part of the runtime the usage report reads
// (runtime.Runtime); a runtime without it reports node usage only.
type UsageReader interface {
	Usage() []runtime.PodUsage
}

// usageSample is one reading with what a rate needs.
type usageSample struct {
	node runtime.NodeUsage
	// ctrs: cumulative CPU time per "podUID/container".
	ctrs map[string]uint64
	at   time.Time
}

// runUsage writes the node's NodeMetrics (metrics.k8s.io) every
// UsageInterval: CPU as the average rate over the interval, memory as
// read. The first report comes one interval after the start, when there
// are two readings to take a rate from.
func (a *Agent) runUsage(ctx context.Context) error {
	t := time.NewTicker(a.cfg.UsageInterval)
	defer t.Stop()
	prev, err := a.readUsage()
	if err != nil {
		a.log.Warn("reading node usage; usage reports are off", logkey.Err, err)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur, pods, err := a.sample()
		if err != nil {
			a.log.Warn("reading node usage", logkey.Err, err)
			continue
		}
		m := buildNodeMetrics(a.cfg.NodeName, prev, cur, pods)
		prev = cur
		if err := a.writeNodeMetrics(ctx, m); err != nil && ctx.Err() == nil {
			a.log.Warn("writing NodeMetrics", logkey.Err, err)
		}
	}
}

func (a *Agent) readUsage() (usageSample, error) {
	s, _, err := a.sample()
	return s, err
}

func (a *Agent) sample() (usageSample, []runtime.PodUsage, error) {
	n, err := runtime.ReadNodeUsage()
	if err != nil {
		return usageSample{}, nil, err
	}
	s := usageSample{node: n, ctrs: map[string]uint64{}, at: n.ReadAt}
	var pods []runtime.PodUsage
	if r, ok := a.cfg.Runtime.(UsageReader); ok {
		pods = r.Usage()
	}
	for _, p := range pods {
		for _, c := range p.Containers {
			s.ctrs[p.UID+"/"+c.Name] = c.CPUNanos
		}
	}
	return s, pods, nil
}

// cpuMilli is the CPU rate between two cumulative readings, in
// millicores; 0 when the counter went back (a restarted container).
func cpuMilli(before, after uint64, d time.Duration) int64 {
	if after < before || d <= 0 {
		return 0
	}
	return int64(float64(after-before) / float64(d.Nanoseconds()) * 1000)
}

func buildNodeMetrics(node string, prev, cur usageSample, pods []runtime.PodUsage) *apiv1.NodeMetrics {
	window := cur.at.Sub(prev.at)
	m := &apiv1.NodeMetrics{Metadata: &apiv1.ObjectMeta{Name: node},
		Timestamp: cur.at.UTC().Format(time.RFC3339), Window: window.Round(time.Second).String(),
		Usage: map[string]string{"cpu": milli(cpuMilli(prev.node.CPUNanos, cur.node.CPUNanos, window)), "memory": bytesQ(cur.node.MemoryBytes)}}
	if window < time.Second {
		m.Window = window.String()
	}
	for _, p := range pods {
		pu := &apiv1.PodUsage{Namespace: p.Namespace, Name: p.Name, Uid: p.UID}
		var podCPU int64
		var podMem uint64
		for _, c := range p.Containers {
			before, ok := prev.ctrs[p.UID+"/"+c.Name]
			if !ok {
				continue // started within the window: no rate yet
			}
			cpu := cpuMilli(before, c.CPUNanos, window)
			podCPU += cpu
			podMem += c.MemoryWorkingSet
			pu.Containers = append(pu.Containers, &apiv1.ContainerMetrics{Name: c.Name,
				Usage: map[string]string{"cpu": milli(cpu), "memory": bytesQ(c.MemoryWorkingSet)}})
		}
		if len(pu.Containers) == 0 {
			continue
		}
		pu.Usage = map[string]string{"cpu": milli(podCPU), "memory": bytesQ(podMem)}
		m.Pods = append(m.Pods, pu)
	}
	return m
}

func milli(v int64) string   { return fmt.Sprintf("%dm", v) }
func bytesQ(v uint64) string { return fmt.Sprintf("%dKi", v>>10) }

// writeNodeMetrics replaces the node's NodeMetrics (no resourceVersion
// precondition: the agent is its only writer), creating it the first time.
func (a *Agent) writeNodeMetrics(ctx context.Context, m *apiv1.NodeMetrics) error {
	_, err := client.Update(ctx, a.cfg.Client, m)
	if client.IsNotFound(err) {
		_, err = client.Create(ctx, a.cfg.Client, m)
	}
	return err
}
