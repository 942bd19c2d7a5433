package dnsservice_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers/dnsservice"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// On a real control plane (with the ClusterIP allocator), the loop makes
// kube-system/kube-dns at 10.96.0.10 with the stored domain, and puts it
// back when an admin deletes it.
func TestClusterDNSServiceIsKeptWithTheClusterDomain(t *testing.T) {
	n, err := clusternet.Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ClusterDomain: "corp.example"}.Parse()
	if err != nil {
		t.Fatal(err)
	}
	cfg := dnsservice.DefaultConfig()
	cfg.Period = 200 * time.Millisecond
	cfg.Network = func(context.Context) (clusternet.Network, error) { return n, nil }
	c := cptest.Start(t, cptest.Options{Loops: []string{"dnsservice", "serviceip"}, Configs: map[string]any{"dnsservice": cfg}})
	cl := c.Client(t)
	ctx := context.Background()
	var svc *apiv1.Service
	first := ""
	check := func() {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, "kube-system/kube-dns at 10.96.0.10", func() bool {
			s, err := client.Get[*apiv1.Service](ctx, cl, "kube-system", "kube-dns")
			svc = s
			return err == nil && s.GetSpec().GetClusterIP() == "10.96.0.10" && s.GetMetadata().GetUid() != first
		})
		if d := svc.GetMetadata().GetAnnotations()[dnsservice.AnnotationClusterDomain]; d != "corp.example" {
			t.Fatalf("domain annotation %q, want corp.example", d)
		}
		if ps := svc.GetSpec().GetPorts(); len(ps) != 2 || ps[0].GetPort() != 53 || ps[0].GetProtocol() != "UDP" || ps[1].GetProtocol() != "TCP" {
			t.Fatalf("ports %v, want 53/UDP and 53/TCP", ps)
		}
	}
	check()
	first = svc.GetMetadata().GetUid()
	if _, _, err := cl.Delete(ctx, "Service", "kube-system", "kube-dns", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check()
	if svc.GetMetadata().GetUid() == first {
		t.Fatal("the deleted Service was not made again (same uid)")
	}
}
