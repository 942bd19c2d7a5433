package apiservice_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/apiservice"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// On a real control plane (with the ClusterIP allocator), the loop makes
// default/kubernetes at 10.96.0.1, port 443 https, and Endpoints listing
// the control nodes' API addresses; a control node that joins or leaves
// changes them; a deleted Service comes back.
func TestKubernetesServiceFollowsTheControlNodes(t *testing.T) {
	var mu sync.Mutex
	servers := []string{"192.0.2.1:7443", "192.0.2.2:7443"}
	cfg := apiservice.DefaultConfig()
	cfg.Period = 100 * time.Millisecond
	cfg.APIServers = func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(servers), nil
	}
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"apiservice", "serviceip"}, Configs: map[string]any{"apiservice": cfg}})
	cl := c.Client(t)
	ctx := context.Background()
	var svc *apiv1.Service
	testutil.WaitFor(t, 10*time.Second, "default/kubernetes at 10.96.0.1", func() bool {
		s, err := client.Get[*apiv1.Service](ctx, cl, "default", "kubernetes")
		svc = s
		return err == nil && s.GetSpec().GetClusterIP() == "10.96.0.1"
	})
	if ps := svc.GetSpec().GetPorts(); len(ps) != 1 || ps[0].GetPort() != 443 || ps[0].GetName() != "https" || len(svc.GetSpec().GetSelector()) != 0 {
		t.Fatalf("spec %v, want port 443 https and no selector", svc.GetSpec())
	}
	addrs := func() []string {
		ep, err := client.Get[*apiv1.Endpoints](ctx, cl, "default", "kubernetes")
		if err != nil {
			return nil
		}
		var out []string
		for _, s := range ep.GetSubsets() {
			for _, a := range s.GetAddresses() {
				for _, p := range s.GetPorts() {
					out = append(out, a.GetIp()+":"+itoa(p.GetPort())+"/"+p.GetName())
				}
			}
		}
		return out
	}
	testutil.WaitFor(t, 10*time.Second, "endpoints of two control nodes", func() bool {
		return slices.Equal(addrs(), []string{"192.0.2.1:7443/https", "192.0.2.2:7443/https"})
	})
	mu.Lock()
	servers = []string{"192.0.2.2:7443", "192.0.2.3:7443", "192.0.2.4:7444"}
	mu.Unlock()
	testutil.WaitFor(t, 10*time.Second, "endpoints to follow: one left, two joined (one on another port)", func() bool {
		return slices.Equal(addrs(), []string{"192.0.2.2:7443/https", "192.0.2.3:7443/https", "192.0.2.4:7444/https"})
	})
	first := svc.GetMetadata().GetUid()
	if _, _, err := cl.Delete(ctx, "Service", "default", "kubernetes", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "default/kubernetes made again", func() bool {
		s, err := client.Get[*apiv1.Service](ctx, cl, "default", "kubernetes")
		return err == nil && s.GetMetadata().GetUid() != first && s.GetSpec().GetClusterIP() == "10.96.0.1"
	})
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// A control node registered under a host name cannot be an endpoint: the
// error names the address.
func TestWantEndpointsRefusesNames(t *testing.T) {
	if _, err := apiservice.WantEndpoints([]string{"c1.example:7443"}); err == nil || !strings.Contains(err.Error(), "c1.example:7443") {
		t.Fatalf("host name: %v, want an error naming it", err)
	}
	if a, err := apiservice.FirstAddress("10.96.0.0/12"); err != nil || a.String() != "10.96.0.1" {
		t.Fatalf("first address: %v %v", a, err)
	}
}
