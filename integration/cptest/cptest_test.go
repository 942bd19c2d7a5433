package cptest

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The harness brings up 3 control nodes and registers hollow nodes that
// stay Ready through heartbeats.
func TestHarnessRegistersHollowNodes(t *testing.T) {
	c := Start(t, Options{HollowNodes: 3, TuneHollow: func(h *hollow.Config) { h.HeartbeatPeriod = 200 * time.Millisecond }})
	cl := c.Client(t)
	ctx := context.Background()
	nodes, _, err := client.List[*apiv1.Node](ctx, cl, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("want 3 nodes, got %d", len(nodes))
	}
	first := map[string]string{}
	for _, n := range nodes {
		if !hollow.NodeReady(n) || n.GetStatus().GetAllocatable()["cpu"] != "4" {
			t.Fatalf("node %s not registered Ready with allocatable: %v", n.GetMetadata().GetName(), n.GetStatus())
		}
		first[n.GetMetadata().GetName()] = n.GetMetadata().GetResourceVersion()
	}
	// Heartbeats keep writing the node status.
	testutil.WaitFor(t, 5*time.Second, "a heartbeat of every node", func() bool {
		for name, rv := range first {
			n, err := client.Get[*apiv1.Node](ctx, cl, "", name)
			if err != nil || n.GetMetadata().GetResourceVersion() == rv {
				return false
			}
		}
		return true
	})
}
