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
	for _, n := range nodes {
		if !apiv1.NodeIsReady(n) || n.GetStatus().GetAllocatable()["cpu"] != "4" {
			t.Fatalf("node %s not registered Ready with allocatable: %v", n.GetMetadata().GetName(), n.GetStatus())
		}
	}
	// Each node has a Lease in kube-node-lease, owned by its Node, and
	// renews it.
	first := map[string]string{}
	for _, n := range nodes {
		l, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, n.GetMetadata().GetName())
		if err != nil {
			t.Fatal(err)
		}
		if refs := l.GetMetadata().GetOwnerReferences(); len(refs) != 1 || refs[0].GetUid() != n.GetMetadata().GetUid() {
			t.Fatalf("lease of %s not owned by its Node: %v", n.GetMetadata().GetName(), refs)
		}
		first[n.GetMetadata().GetName()] = l.GetSpec().GetRenewTime()
	}
	testutil.WaitFor(t, 5*time.Second, "a renewal of every node's lease", func() bool {
		for name, renewed := range first {
			l, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, name)
			if err != nil || l.GetSpec().GetRenewTime() == renewed {
				return false
			}
		}
		return true
	})
}

// A node's Lease is its Node's dependent: deleting the Node removes it.
func TestDeletingNodeRemovesItsLease(t *testing.T) {
	c := Start(t, Options{HollowNodes: 2, Loops: []string{}, TuneHollow: func(h *hollow.Config) { h.HeartbeatPeriod = 200 * time.Millisecond }})
	cl := c.Client(t)
	ctx := context.Background()
	if _, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, "hollow-1"); err != nil {
		t.Fatal(err)
	}
	c.Pool.Node("hollow-1").Stop() // a dead machine: nobody renews (recreates) the lease
	if _, _, err := cl.Delete(ctx, "Node", "", "hollow-1", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "hollow-1's lease deleted with its Node", func() bool {
		_, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, "hollow-1")
		return client.IsNotFound(err)
	})
	if _, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, "hollow-0"); err != nil {
		t.Fatalf("the other node's lease: %v", err)
	}
}
