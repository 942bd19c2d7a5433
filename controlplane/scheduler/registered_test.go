package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// zoneFilter keeps pods labelled zone=<z> on nodes labelled alike; pods
// without the label are not its concern.
var zoneFilter = scheduler.Filter{
	Name:     "Zone",
	Relevant: func(p *scheduler.PodInfo) bool { return p.Pod.GetMetadata().GetLabels()["zone"] != "" },
	Check: func(p *scheduler.PodInfo, n *scheduler.NodeInfo) string {
		if n.Node.GetMetadata().GetLabels()["zone"] != p.Pod.GetMetadata().GetLabels()["zone"] {
			return "node(s) were in another zone"
		}
		return ""
	},
}

// A filter registered through the scheduler's config (as a Deps config
// from the registry) steers every pod it concerns, plain pods included,
// in the real loop; other pods spread over every node.
func TestRegisteredFilterInTheLoop(t *testing.T) {
	cfg := scheduler.DefaultConfig()
	cfg.Filters = append(append([]scheduler.Filter(nil), scheduler.DefaultFilters...), zoneFilter)
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler"}, Configs: map[string]any{"scheduler": cfg}})
	cl := c.Client(t)
	ctx := context.Background()
	for i, zone := range []string{"a", "b", "b"} {
		if _, err := c.Pool.AddNodeWithCapacity(ctx, fmt.Sprintf("n%d", i), map[string]string{"zone": zone},
			map[string]string{"cpu": "8", "memory": "8Gi", "pods": "110"}); err != nil {
			t.Fatal(err)
		}
	}
	inZoneA := func(p *apiv1.Pod) { p.Metadata.Labels["zone"] = "a" }
	for i := 0; i < 6; i++ {
		if _, err := client.Create(ctx, cl, testPod(fmt.Sprintf("a%d", i), "100m", inZoneA)); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Create(ctx, cl, testPod(fmt.Sprintf("any%d", i), "100m")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "12 pods bound", func() bool {
		bound := 0
		for _, p := range listPods(t, cl) {
			if p.GetSpec().GetNodeName() != "" {
				bound++
			}
		}
		return bound == 12
	})
	others := map[string]int{}
	for _, p := range listPods(t, cl) {
		node := p.GetSpec().GetNodeName()
		if p.GetMetadata().GetLabels()["zone"] == "a" {
			if node != "n0" {
				t.Errorf("pod %s of zone a on %s, want n0 (the only zone-a node)", p.GetMetadata().GetName(), node)
			}
			continue
		}
		others[node]++
	}
	if len(others) < 2 {
		t.Errorf("pods without a zone all on %v: the zone filter ran for them", others)
	}
}

// A registered filter that panics ends the scheduler's Run with
// ErrPanic (the leader's failure policy then restarts it, and steps down
// if it keeps failing) instead of killing the control node.
func TestPanickingFilterEndsRunWithErrPanic(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 1, Loops: []string{}})
	cl := c.Client(t)
	cfg := scheduler.DefaultConfig()
	cfg.Filters = append(append([]scheduler.Filter(nil), scheduler.DefaultFilters...), scheduler.Filter{
		Name: "Broken", Check: func(*scheduler.PodInfo, *scheduler.NodeInfo) string { panic("broken filter") }})
	s := scheduler.New(cl, nil, cfg)
	if _, err := client.Create(context.Background(), cl, testPod("p", "100m")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Run(ctx); !errors.Is(err, ctrlkit.ErrPanic) {
		t.Fatalf("Run returned %v, want ErrPanic", err)
	}
}
