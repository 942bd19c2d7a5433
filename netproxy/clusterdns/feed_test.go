package clusterdns

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers/dnsservice"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The feed on a real control plane (ClusterIP allocator and the
// dnsservice loop with domain corp.example): it follows kube-dns' address
// and domain, publishes a StatefulSet-style pod by hostname once it is
// ready, and a new Service's name as soon as its ClusterIP is allocated.
// (The test serves nothing: listening takes the node's namespace.)
func TestFeedFollowsTheAPI(t *testing.T) {
	n, err := clusternet.Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ClusterDomain: "corp.example"}.Parse()
	if err != nil {
		t.Fatal(err)
	}
	dc := dnsservice.DefaultConfig()
	dc.Network = func(context.Context) (clusternet.Network, error) { return n, nil }
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceip", "dnsservice"}, Configs: map[string]any{"dnsservice": dc}})
	cl := c.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	zone := NewZone("")
	f := newFeed(cl, zone)
	done := make(chan error, 1)
	go func() { done <- f.run(ctx, func() {}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	testutil.WaitFor(t, 10*time.Second, "kube-dns' address and domain", func() bool {
		s, synced, _ := f.current()
		return synced && s == Settings{Nameserver: netip.MustParseAddr("10.96.0.10"), Domain: "corp.example"}
	})
	if zone.Domain() != "corp.example" {
		t.Fatalf("zone domain %q, want corp.example", zone.Domain())
	}
	has := func(name, want string) func() bool {
		return func() bool {
			a, ok := zone.Lookup(name, dns.TypeA)
			return ok && slices.Equal(values(a.Answer), []string{want})
		}
	}
	testutil.WaitFor(t, 5*time.Second, "kube-dns' own name", has("kube-dns.kube-system.svc.corp.example.", "A 10.96.0.10"))

	if _, err := client.Create(ctx, cl, service("default", "db", "None")); err != nil {
		t.Fatal(err)
	}
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "db-0"},
		Spec: &apiv1.PodSpec{Hostname: "db-0", Subdomain: "db", Containers: []*apiv1.Container{{Name: "main", Image: "busybox"}}}}
	pod, err = client.Create(ctx, cl, pod)
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = &apiv1.PodStatus{Phase: "Running", PodIP: "10.244.1.5", Conditions: []*apiv1.PodCondition{{Type: "Ready", Status: "False"}}}
	if pod, err = client.UpdateStatus(ctx, cl, pod); err != nil {
		t.Fatal(err)
	}
	// A pod that is not ready is not published; once ready, it is.
	testutil.WaitFor(t, 5*time.Second, "the db Service in the zone", func() bool {
		a, ok := zone.Lookup("db.default.svc.corp.example.", dns.TypeA)
		return ok && a.Rcode == dns.RcodeSuccess
	})
	if a, _ := zone.Lookup("db-0.db.default.svc.corp.example.", dns.TypeA); len(a.Answer) != 0 {
		t.Fatalf("a not-ready pod is published: %v", a.Answer)
	}
	pod.Status.Conditions[0].Status = "True"
	if _, err := client.UpdateStatus(ctx, cl, pod); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "db-0 by its hostname", has("db-0.db.default.svc.corp.example.", "A 10.244.1.5"))

	start := time.Now()
	if _, err := client.Create(ctx, cl, service("default", "web", "", &apiv1.ServicePort{Name: "http", Port: 80})); err != nil {
		t.Fatal(err)
	}
	var ip string
	testutil.WaitFor(t, 5*time.Second, "the new Service's name", func() bool {
		a, ok := zone.Lookup("web.default.svc.corp.example.", dns.TypeA)
		if ok && len(a.Answer) == 1 {
			ip = a.Answer[0].(*dns.A).A.String()
			return true
		}
		return false
	})
	t.Logf("new Service answered at %s after %v", ip, time.Since(start))
	if _, _, err := cl.Delete(ctx, "Service", "default", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the deleted Service's name gone", func() bool {
		a, ok := zone.Lookup("web.default.svc.corp.example.", dns.TypeA)
		return ok && a.Rcode == dns.RcodeNameError
	})
}
