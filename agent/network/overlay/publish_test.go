package overlay_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/network/overlay"
	"github.com/skiffhq/skiff/controlplane/api"
	cpnode "github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestPublishMAC: a node writes its VTEP MAC on its own Node through the real
// API with its own certificate; another node cannot write it on that Node.
func TestPublishMAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cp := apitest.Start(t, 1, func(cfg *api.Config) {
		g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("node graph: %v", err)
			}
		}()
		cfg.Authorizer = apitest.CertGroups(cpnode.NewAuthorizer(g))
	})
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	nodeClient := func(name string) *client.Client {
		tc, err := cp.ClientTLS("node:" + name)
		if err != nil {
			t.Fatal(err)
		}
		o := client.DefaultOptions()
		o.Servers, o.TLS = cp.Addrs(), tc
		c, err := client.New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	w1, w2 := nodeClient("w1"), nodeClient("w2")
	for _, c := range []*client.Client{w1, w2} {
		name := "w1"
		if c == w2 {
			name = "w2"
		}
		if _, err := client.Create(ctx, c, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: name}, Spec: &apiv1.NodeSpec{}}); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
	}
	mac := []byte{0x02, 0, 0, 0, 0, 1}
	if err := overlay.PublishMAC(ctx, w1, "w1", mac); err != nil {
		t.Fatalf("w1 publishing on its own Node: %v", err)
	}
	n, err := client.Get[*apiv1.Node](ctx, cp.MustClient(t), "", "w1")
	if err != nil || n.GetMetadata().GetAnnotations()[overlay.MACAnnotation] != "02:00:00:00:00:01" {
		t.Fatalf("Node w1 annotations = %v, %v", n.GetMetadata().GetAnnotations(), err)
	}
	if err := overlay.PublishMAC(ctx, w2, "w1", []byte{0x02, 0, 0, 0, 0, 2}); err == nil {
		t.Fatal("w2 wrote the VTEP MAC of Node w1: want refused")
	} else {
		t.Logf("w2 on w1's Node refused: %v", err)
	}
}
