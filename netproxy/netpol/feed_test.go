package netpol_test

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/netproxy/netpol"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// recorder is an Applier that keeps the last model.
type recorder struct {
	mu   sync.Mutex
	last *netpol.Model
}

func (r *recorder) Apply(m *netpol.Model) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = m
	return true, nil
}

func (r *recorder) model() *netpol.Model {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// The feed on a worker, with the worker's own certificate against API
// servers that decide as control nodes do (node authorizer): it may read
// Pods, Namespaces and NetworkPolicies, and a new policy and the IP the
// node reports for its pod reach the model it programs. The same node may
// not write a NetworkPolicy.
func TestFeedAsNode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cp := apitest.Start(t, 1, func(cfg *api.Config) {
		g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx); err != nil {
				t.Errorf("node graph: %v", err)
			}
		}()
		cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(g))
	})
	admin := cp.MustClient(t)
	tc, err := cp.ClientTLS("node:w1")
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = cp.Addrs(), tc
	nc, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })

	rec := &recorder{}
	feed := netpol.NewFeed(nc, "w1", rec, nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := feed.Run(ctx); err != nil {
			t.Errorf("feed: %v", err)
		}
	}()

	if _, err := client.Create(ctx, admin, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	pod, err := client.Create(ctx, admin, &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: &apiv1.PodSpec{NodeName: "w1", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = &apiv1.PodStatus{Phase: "Running", PodIP: "10.244.1.5"}
	if _, err := client.UpdateStatus(ctx, nc, pod); err != nil {
		t.Fatalf("node sets its pod's IP: %v", err)
	}
	deny := &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: "deny"},
		Spec: &apiv1.NetworkPolicySpec{PodSelector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if _, err := client.Create(ctx, nc, deny); !client.IsForbidden(err) {
		t.Fatalf("node creates a NetworkPolicy: err %v, want PermissionDenied", err)
	}
	if _, err := client.Create(ctx, admin, deny); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.244.1.5")
	testutil.WaitFor(t, 10*time.Second, "the pod isolated for ingress in the node's model", func() bool {
		m := rec.model()
		return m != nil && slices.Contains(m.IngressIsolated, ip)
	})
	if m := rec.model(); m.Allows(netip.MustParseAddr("10.244.2.9"), ip, netpol.ProtoTCP, 80) {
		t.Fatal("deny-all policy allows ingress")
	}
}
