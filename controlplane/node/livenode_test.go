package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// What makes a Node's name live, decided on objects in a real store: the
// newest of its Lease renewal and Ready heartbeat within the window, and
// not marked Unknown by the node lifecycle controller.
func TestLiveNodeRules(t *testing.T) {
	store := consensustest.Start(t, 1, nil).Nodes[0].Store()
	testutil.WaitFor(t, 10*time.Second, "the store to elect itself", store.IsLeader)
	ctx := context.Background()
	reg := kinds.NewRegistry()
	live, err := newLiveNodes(store, reg, 40*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	live.now = func() time.Time { return now }
	nodeKind, _ := reg.ForKind("Node")
	leaseKind, _ := reg.ForKind("Lease")
	put := func(key string, obj kinds.Object) {
		t.Helper()
		b, err := codec.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, &storepb.PutRequest{Key: []byte(key), Value: b}); err != nil {
			t.Fatal(err)
		}
	}
	node := func(name, ready string, heartbeat time.Duration) {
		n := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: name}}
		if ready != "" {
			n.Status = &apiv1.NodeStatus{Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: ready,
				LastHeartbeatTime: now.Add(-heartbeat).Format(time.RFC3339)}}}
		}
		put(nodeKind.Key("", name), n)
	}
	lease := func(name string, renewed time.Duration) {
		rt := now.Add(-renewed).Format(apiv1.MicroTimeFormat)
		put(leaseKind.Key(apiv1.NodeLeaseNamespace, name), &apiv1.Lease{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: apiv1.NodeLeaseNamespace},
			Spec: &apiv1.LeaseSpec{RenewTime: &rt}})
	}
	node("fresh-ready", "True", 5*time.Second)
	node("stale-ready", "True", 5*time.Minute)
	node("stale-ready-fresh-lease", "True", 5*time.Minute)
	lease("stale-ready-fresh-lease", 2*time.Second)
	node("notready-fresh", "False", time.Second)
	node("unknown-fresh-lease", "Unknown", 5*time.Minute)
	lease("unknown-fresh-lease", time.Second)
	node("registered-only", "", 0)
	node("lease-only", "", 0)
	lease("lease-only", 39*time.Second)
	node("lease-just-too-old", "", 0)
	lease("lease-just-too-old", 41*time.Second)

	for name, want := range map[string]bool{
		"fresh-ready":             true,
		"stale-ready":             false,
		"stale-ready-fresh-lease": true,
		"notready-fresh":          true, // heartbeating, only not ready: still that machine's name
		"unknown-fresh-lease":     false,
		"registered-only":         false,
		"lease-only":              true,
		"lease-just-too-old":      false,
		"no-such-node":            false,
	} {
		id, _ := pki.NodeIdentity(name)
		err := live.checkJoin(ctx, id)
		if got := errors.Is(err, pki.ErrNameInUse); got != want {
			t.Errorf("%s: live=%v (%v), want %v", name, got, err, want)
		}
		if err != nil && !errors.Is(err, pki.ErrNameInUse) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Control identities are not this check's business.
	cid, _ := pki.ControlIdentity("fresh-ready")
	if err := live.checkJoin(ctx, cid); err != nil {
		t.Fatalf("control join checked against Nodes: %v", err)
	}
}
