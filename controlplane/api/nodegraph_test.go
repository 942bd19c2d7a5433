package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// A follower's graph answers a binding made through the leader at once:
// a miss catches up with the cluster before it refuses, so an agent that
// saw its pod on one control node is never refused its Secret on another.
// A deleted pod's references go (as the watch delivers the delete), and a
// pod's status writes keep them.
func TestNodeGraphOnFollowerCatchesUp(t *testing.T) {
	c := startReady(t, 3)
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Follower(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	g := api.NewNodeGraph(f.Node.Store(), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("graph Run: %v", err)
		}
	})
	admin := c.MustClient(t, leader.Addr)
	for i := 0; i < 20; i++ {
		p := pod("default", fmt.Sprintf("p%d", i), nil)
		p.Spec.NodeName = "w1"
		p.Spec.ImagePullSecrets = []*apiv1.LocalObjectReference{{Name: fmt.Sprintf("s%d", i)}}
		mustCreate(t, admin, p)
		ok, err := g.References(ctxT(t, 10*time.Second), "w1", "Secret", "default", fmt.Sprintf("s%d", i))
		if err != nil || !ok {
			t.Fatalf("pod %d: References right after the create = %v, %v; want true", i, ok, err)
		}
		if ok, _ := g.References(ctxT(t, 10*time.Second), "w2", "Secret", "default", fmt.Sprintf("s%d", i)); ok {
			t.Fatalf("pod %d: node w2 is granted w1's secret", i)
		}
	}
	p0, err := client.Get[*apiv1.Pod](ctxT(t, 10*time.Second), admin, "default", "p0")
	if err != nil {
		t.Fatal(err)
	}
	p0.Status = &apiv1.PodStatus{Phase: "Running"}
	if _, err := client.UpdateStatus(ctxT(t, 10*time.Second), admin, p0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Delete(ctxT(t, 10*time.Second), "Pod", "default", "p1", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the deleted pod's secret to leave the graph", func() bool {
		ok, err := g.References(ctxT(t, 10*time.Second), "w1", "Secret", "default", "s1")
		return err == nil && !ok
	})
	if ok, err := g.References(ctxT(t, 10*time.Second), "w1", "Secret", "default", "s0"); err != nil || !ok {
		t.Errorf("after a status write the pod's secret: %v, %v; want still referenced", ok, err)
	}
}
