package api_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestWatchResumesAcrossLeaderChange: an informer watching through the
// leader's API server loses it mid-stream (the node crashes, a new leader
// is elected) and resumes from its last resourceVersion on another server:
// every pod created is seen exactly once, in revision order, without a
// re-list.
func TestWatchResumesAcrossLeaderChange(t *testing.T) {
	c := startReady(t, 3)
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher prefers the leader's server (first in its list).
	servers := []string{leader.Addr}
	for _, a := range c.Addrs() {
		if a != leader.Addr {
			servers = append(servers, a)
		}
	}
	watcher := c.MustClient(t, servers...)
	writer := c.MustClient(t)

	var mu sync.Mutex
	seen := map[string]int{}
	var lastRev int64
	var order []string
	inf := client.NewInformer(watcher, "Pod", client.ListOptions{Namespace: "default"}, client.EventHandler{
		OnAdd: func(obj client.Object) {
			mu.Lock()
			defer mu.Unlock()
			rev := client.Revision(obj.GetMetadata().GetResourceVersion())
			if rev <= lastRev {
				order = append(order, fmt.Sprintf("%s at %d after %d", obj.GetMetadata().GetName(), rev, lastRev))
			}
			lastRev = rev
			seen[obj.GetMetadata().GetName()]++
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	infDone := make(chan error, 1)
	go func() { infDone <- inf.Run(ctx) }()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}

	const total = 60
	for i := 0; i < total; i++ {
		if i == total/3 {
			c.StopNode(leader) // the watcher's server and the Raft leader at once
		}
		p := pod("default", fmt.Sprintf("w-%03d", i), nil)
		// A create that lost its leader mid-flight may or may not have
		// happened; the check below compares with what the store holds.
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := client.Create(wctx, writer, p)
		wcancel()
		if err != nil && !client.IsAlreadyExists(err) {
			t.Logf("create %s: %v", p.Metadata.Name, err)
		}
	}
	pods, _, err := client.List[*apiv1.Pod](ctx, writer, client.ListOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) < total*9/10 {
		t.Fatalf("only %d of %d creates landed", len(pods), total)
	}
	testutil.WaitFor(t, 30*time.Second, "informer sees every pod", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == len(pods)
	})
	cancel()
	<-infDone
	mu.Lock()
	defer mu.Unlock()
	for name, n := range seen {
		if n != 1 {
			t.Errorf("pod %s added %d times", name, n)
		}
	}
	for _, p := range pods {
		if seen[p.Metadata.Name] != 1 {
			t.Errorf("pod %s in the store but seen %d times", p.Metadata.Name, seen[p.Metadata.Name])
		}
	}
	if len(order) > 0 {
		t.Errorf("events out of revision order: %v", order)
	}
	if inf.Relists() != 0 {
		t.Errorf("informer re-listed %d times; it should have resumed the watch", inf.Relists())
	}
}

// TestWatchTooOldIsOutOfRange: a watch from a revision older than the
// history the store keeps fails with the distinct "re-list" code.
func TestWatchTooOldIsOutOfRange(t *testing.T) {
	c := startReadyTuned(t)
	cl := c.MustClient(t)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 20; i++ {
		mustCreate(t, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("c%d", i)}})
	}
	_, err := cl.API().Watch(ctx, &apiv1.WatchRequest{Kind: "ConfigMap", ResourceVersion: "1"})
	if !client.IsTooOld(err) {
		t.Fatalf("want OutOfRange, got %v", err)
	}
	// A selector watch: a pod leaving the selection is DELETED for it.
	l, err := cl.API().List(ctx, &apiv1.ListRequest{Kind: "ConfigMap"})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := cl.API().Watch(ctx, &apiv1.WatchRequest{Kind: "ConfigMap", Namespace: "default", LabelSelector: "app=x",
		ResourceVersion: l.Metadata.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Patch[*apiv1.ConfigMap](ctx, cl, "default", "c1", []byte(`{"metadata":{"labels":{"app":"x"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Patch[*apiv1.ConfigMap](ctx, cl, "default", "c1", []byte(`{"metadata":{"labels":{"app":"y"}}}`)); err != nil {
		t.Fatal(err)
	}
	var types []apiv1.WatchEvent_Type
	for len(types) < 2 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Events {
			types = append(types, e.Type)
		}
	}
	if types[0] != apiv1.WatchEvent_ADDED || types[1] != apiv1.WatchEvent_DELETED {
		t.Fatalf("selector watch events: %v", types)
	}
}
