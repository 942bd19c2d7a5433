package serviceip_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/serviceip"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The kubernetes Service's 10.96.0.1 and the cluster DNS Service's
// 10.96.0.10 are never handed out: a range of 14 usable addresses fills
// after 12 Services, none holding either. A user Service asking for one
// is refused at the API naming spec.clusterIP; the owners get theirs.
func TestReservedClusterIPs(t *testing.T) {
	cfg := serviceip.Config{ServiceCIDR: "10.96.0.0/28", OrphanGrace: time.Second, GCPeriod: 500 * time.Millisecond}
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceip"}, Configs: map[string]any{"serviceip": cfg}})
	cl := c.Client(t)
	ctx := context.Background()
	for _, ip := range []string{"10.96.0.1", "10.96.0.10"} {
		s := svc("mine", "ClusterIP", ip)
		_, err := client.Create(ctx, cl, s)
		if !client.IsInvalid(err) || !strings.Contains(err.Error(), "spec.clusterIP") || !strings.Contains(err.Error(), "reserved") {
			t.Fatalf("user Service asking for %s: %v, want InvalidArgument naming spec.clusterIP as reserved", ip, err)
		}
		t.Logf("refused: %v", err)
	}
	s := svc("mine", "ClusterIP", "")
	s.Spec.ClusterIPs = []string{"10.96.0.10"}
	if _, err := client.Create(ctx, cl, s); !client.IsInvalid(err) || !strings.Contains(err.Error(), "spec.clusterIPs[0]") {
		t.Fatalf("user Service asking for 10.96.0.10 in clusterIPs: %v, want InvalidArgument naming spec.clusterIPs[0]", err)
	}
	// The owners claim theirs.
	k := svc("kubernetes", "ClusterIP", "10.96.0.1")
	k.Spec.Selector = nil
	if _, err := client.Create(ctx, cl, k); err != nil {
		t.Fatalf("default/kubernetes at 10.96.0.1: %v", err)
	}
	if _, err := client.Create(ctx, cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "kube-system"}}); err != nil && !client.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dns := svc("kube-dns", "ClusterIP", "10.96.0.10")
	dns.Metadata.Namespace = "kube-system"
	if _, err := client.Create(ctx, cl, dns); err != nil {
		t.Fatalf("kube-system/kube-dns at 10.96.0.10: %v", err)
	}
	// 13 more Services in 12 free addresses: 12 get one, none reserved.
	for i := 0; i < 13; i++ {
		if _, err := client.Create(ctx, cl, svc(fmt.Sprintf("s%d", i), "ClusterIP", "")); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]string
	testutil.WaitFor(t, 20*time.Second, "12 of 13 Services allocated", func() bool {
		list, _, err := client.List[*apiv1.Service](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		got = map[string]string{}
		for _, s := range list {
			if ip := s.GetSpec().GetClusterIP(); ip != "" && strings.HasPrefix(s.GetMetadata().GetName(), "s") {
				got[s.GetMetadata().GetName()] = ip
			}
		}
		return len(got) == 12
	})
	seen := map[string]string{}
	for name, ip := range got {
		if ip == "10.96.0.1" || ip == "10.96.0.10" {
			t.Errorf("Service %s was given the reserved %s", name, ip)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s given to %s and %s", ip, other, name)
		}
		seen[ip] = name
	}
	// The range stays full: the 13th never gets one.
	testutil.WaitFor(t, 10*time.Second, "a RangeFull retry on the 13th", func() bool {
		list, _, _ := client.List[*apiv1.Service](ctx, cl, client.ListOptions{Namespace: "default"})
		n := 0
		for _, s := range list {
			if strings.HasPrefix(s.GetMetadata().GetName(), "s") && s.GetSpec().GetClusterIP() != "" {
				n++
			}
		}
		return n == 12
	})
}
