package agent

import (
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
)

// CPU is the rate between two cumulative readings; a container first seen
// in the later one has no rate yet and is left out (so is a pod with none
// left), and a counter that went back (a restarted container) reads 0.
func TestBuildNodeMetrics(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	prev := usageSample{node: runtime.NodeUsage{CPUNanos: 10e9}, at: t0,
		ctrs: map[string]uint64{"u1/web": 1e9, "u1/side": 5e9}}
	cur := usageSample{node: runtime.NodeUsage{CPUNanos: 13e9, MemoryBytes: 2 << 30}, at: t0.Add(2 * time.Second),
		ctrs: map[string]uint64{"u1/web": 2e9, "u1/side": 1e9, "u1/new": 1e9, "u2/only": 1e9}}
	pods := []runtime.PodUsage{
		{UID: "u1", Namespace: "default", Name: "web-1", Containers: []runtime.ContainerUsage{
			{Name: "web", CPUNanos: 2e9, MemoryWorkingSet: 64 << 20},
			{Name: "side", CPUNanos: 1e9, MemoryWorkingSet: 16 << 20},
			{Name: "new", CPUNanos: 1e9, MemoryWorkingSet: 1 << 20}}},
		{UID: "u2", Namespace: "default", Name: "fresh", Containers: []runtime.ContainerUsage{{Name: "only", CPUNanos: 1e9}}},
	}
	m := buildNodeMetrics("w1", prev, cur, pods)
	if m.GetMetadata().GetName() != "w1" || m.GetWindow() != "2s" || m.GetTimestamp() != "2026-12-03T12:00:02Z" {
		t.Errorf("meta %v window %q timestamp %q", m.GetMetadata(), m.GetWindow(), m.GetTimestamp())
	}
	if m.GetUsage()["cpu"] != "1500m" || m.GetUsage()["memory"] != "2097152Ki" {
		t.Errorf("node usage %v", m.GetUsage())
	}
	if len(m.GetPods()) != 1 {
		t.Fatalf("pods %v, want web-1 only", m.GetPods())
	}
	p := m.GetPods()[0]
	if p.GetName() != "web-1" || p.GetUid() != "u1" || p.GetUsage()["cpu"] != "500m" || p.GetUsage()["memory"] != "81920Ki" {
		t.Errorf("pod %v", p)
	}
	if len(p.GetContainers()) != 2 || p.GetContainers()[0].GetUsage()["cpu"] != "500m" || p.GetContainers()[1].GetUsage()["cpu"] != "0m" {
		t.Errorf("containers %v", p.GetContainers())
	}
}
