package serviceip_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/serviceip"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func svc(name, typ, clusterIP string, nodePorts ...int32) *apiv1.Service {
	s := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &apiv1.ServiceSpec{Type: typ, ClusterIP: clusterIP, Selector: map[string]string{"app": name}}}
	if len(nodePorts) == 0 {
		nodePorts = []int32{0}
	}
	for i, np := range nodePorts {
		s.Spec.Ports = append(s.Spec.Ports, &apiv1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(80 + i), NodePort: np})
	}
	return s
}

func allocated(s *apiv1.Service) bool {
	if s.GetSpec().GetClusterIP() == "" {
		return false
	}
	if s.GetSpec().GetType() == "NodePort" {
		for _, p := range s.GetSpec().GetPorts() {
			if p.GetNodePort() == 0 {
				return false
			}
		}
	}
	return true
}

func warned(t *testing.T, cl *client.Client, name, reason string) bool {
	evs, _, err := client.List[*apiv1.Event](context.Background(), cl, client.ListOptions{Namespace: "default"})
	if err != nil {
		return false
	}
	for _, e := range evs {
		if e.GetInvolvedObject().GetName() == name && e.GetReason() == reason && e.GetType() == "Warning" {
			t.Logf("event %s: %s", reason, e.GetMessage())
			return true
		}
	}
	return false
}

// ClusterIPs come from the service CIDR, NodePorts from the range;
// explicit requests that collide get an Event and stay unallocated;
// deleting a Service releases what it held.
func TestAllocateCollideRelease(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceip"}})
	cl := c.Client(t)
	ctx := context.Background()
	for _, s := range []*apiv1.Service{svc("a", "ClusterIP", ""), svc("b", "NodePort", "", 0, 0), svc("c", "NodePort", "", 30000)} {
		if _, err := client.Create(ctx, cl, s); err != nil {
			t.Fatal(err)
		}
	}
	cidr := netip.MustParsePrefix("10.96.0.0/12")
	get := func(name string) *apiv1.Service {
		s, err := client.Get[*apiv1.Service](ctx, cl, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	testutil.WaitFor(t, 10*time.Second, "a, b, c allocated", func() bool {
		return allocated(get("a")) && allocated(get("b")) && allocated(get("c"))
	})
	seen := map[string]bool{}
	for _, name := range []string{"a", "b", "c"} {
		s := get(name)
		ip := netip.MustParseAddr(s.GetSpec().GetClusterIP())
		if !cidr.Contains(ip) || seen[ip.String()] || len(s.GetSpec().GetClusterIPs()) != 1 {
			t.Fatalf("service %s: bad clusterIP %s (%v)", name, ip, s.GetSpec().GetClusterIPs())
		}
		seen[ip.String()] = true
		for _, p := range s.GetSpec().GetPorts() {
			np := p.GetNodePort()
			if s.GetSpec().GetType() == "NodePort" && (np < 30000 || np > 32767 || seen[fmt.Sprint(np)]) {
				t.Fatalf("service %s: bad nodePort %d", name, np)
			}
			seen[fmt.Sprint(np)] = true
		}
	}
	if get("c").GetSpec().GetPorts()[0].GetNodePort() != 30000 {
		t.Fatalf("explicit nodePort 30000 not kept")
	}
	aIP := get("a").GetSpec().GetClusterIP()
	// Explicit requests for what a and c hold.
	if _, err := client.Create(ctx, cl, svc("dup-ip", "ClusterIP", aIP)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, cl, svc("dup-port", "NodePort", "", 30000)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "ClusterIPAlreadyAllocated event", func() bool { return warned(t, cl, "dup-ip", "ClusterIPAlreadyAllocated") })
	testutil.WaitFor(t, 10*time.Second, "PortAlreadyAllocated event", func() bool { return warned(t, cl, "dup-port", "PortAlreadyAllocated") })
	if p := get("dup-port").GetSpec().GetPorts()[0].GetNodePort(); p != 30000 {
		t.Fatalf("dup-port was given another port %d behind the user's back", p)
	}
	recs, _, err := client.List[*apiv1.ConfigMap](ctx, cl, client.ListOptions{Namespace: "kube-system", LabelSelector: serviceip.LabelAllocation})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.GetData()["service"] == "default/dup-ip" || (r.GetData()["service"] == "default/dup-port" && strings.HasPrefix(r.GetMetadata().GetName(), "nodeport-30000")) {
			t.Fatalf("colliding request got record %s", r.GetMetadata().GetName())
		}
	}
	// Deleting a releases its IP: the record goes, and the IP can be requested.
	if _, _, err := cl.Delete(ctx, "Service", "default", "a", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a's record released", func() bool {
		_, err := client.Get[*apiv1.ConfigMap](ctx, cl, "kube-system", "clusterip-"+aIP)
		return client.IsNotFound(err)
	})
	if _, err := client.Create(ctx, cl, svc("reuse", "ClusterIP", aIP)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "reuse owns the released IP", func() bool {
		r, err := client.Get[*apiv1.ConfigMap](ctx, cl, "kube-system", "clusterip-"+aIP)
		return err == nil && r.GetData()["service"] == "default/reuse"
	})
}

// Many Services are created while the leader is killed: every one gets a
// ClusterIP (and NodePort) and none is handed out twice.
func TestNoDuplicatesAcrossLeaderChange(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceip"},
		Configs: map[string]any{"serviceip": serviceip.Config{ServiceCIDR: "10.96.0.0/24", NodePortMin: 30000, NodePortMax: 30255, OrphanGrace: 2 * time.Second, GCPeriod: time.Second}}})
	cl := c.Client(t)
	ctx := context.Background()
	const n = 120
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		if i == n/3 {
			wg.Wait()
			old := c.StopLeader(t)
			t.Cleanup(func() { _ = c.StartControlNode(old) })
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			typ := "ClusterIP"
			if i%2 == 0 {
				typ = "NodePort"
			}
			for attempt := 0; ; attempt++ {
				_, err := client.Create(ctx, cl, svc(fmt.Sprintf("s%03d", i), typ, ""))
				if err == nil || client.IsAlreadyExists(err) {
					return
				}
				if attempt == 20 {
					errs <- err
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var all []*apiv1.Service
	testutil.WaitFor(t, 30*time.Second, "every service allocated", func() bool {
		var err error
		all, _, err = client.List[*apiv1.Service](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		k := 0
		for _, s := range all {
			if strings.HasPrefix(s.GetMetadata().GetName(), "s") && allocated(s) {
				k++
			}
		}
		return k == n
	})
	ips, ports := map[string]string{}, map[int32]string{}
	for _, s := range all {
		name := s.GetMetadata().GetName()
		if ip := s.GetSpec().GetClusterIP(); ip != "" {
			if other, dup := ips[ip]; dup {
				t.Fatalf("clusterIP %s given to %s and %s", ip, other, name)
			}
			ips[ip] = name
		}
		for _, p := range s.GetSpec().GetPorts() {
			if np := p.GetNodePort(); np != 0 {
				if other, dup := ports[np]; dup {
					t.Fatalf("nodePort %d given to %s and %s", np, other, name)
				}
				ports[np] = name
			}
		}
	}
	// Each allocation has exactly its record, and orphaned records (a lost
	// race's leftovers) are collected.
	testutil.WaitFor(t, 20*time.Second, "records match allocations", func() bool {
		recs, _, err := client.List[*apiv1.ConfigMap](ctx, cl, client.ListOptions{Namespace: "kube-system", LabelSelector: serviceip.LabelAllocation})
		if err != nil || len(recs) != len(ips)+len(ports) {
			return false
		}
		for _, r := range recs {
			name := r.GetMetadata().GetName()
			var owner string
			if ip, ok := strings.CutPrefix(name, "clusterip-"); ok {
				owner = ips[ip]
			} else {
				var np int32
				fmt.Sscanf(name, "nodeport-%d", &np)
				owner = ports[np]
			}
			if "default/"+owner != r.GetData()["service"] {
				return false
			}
		}
		return true
	})
}

// Two allocators running at once — a deposed leader still finishing its
// work while the new one starts — in a small range where their random
// picks collide often: still no address or port is given twice.
func TestTwoAllocatorsRacing(t *testing.T) {
	cfg := serviceip.Config{ServiceCIDR: "10.96.0.0/25", NodePortMin: 30000, NodePortMax: 30127, OrphanGrace: time.Second, GCPeriod: 500 * time.Millisecond}
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceip"}, Configs: map[string]any{"serviceip": cfg}})
	cl := c.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	second, err := serviceip.New(c.Client(t), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	const n = 60
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := client.Create(ctx, cl, svc(fmt.Sprintf("r%02d", i), "NodePort", "")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	testutil.WaitFor(t, 30*time.Second, "every service allocated", func() bool {
		all, _, err := client.List[*apiv1.Service](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil || len(all) < n {
			return false
		}
		for _, s := range all {
			if !allocated(s) {
				return false
			}
		}
		seen := map[string]string{}
		for _, s := range all {
			keys := []string{s.GetSpec().GetClusterIP()}
			for _, p := range s.GetSpec().GetPorts() {
				keys = append(keys, fmt.Sprint(p.GetNodePort()))
			}
			for _, k := range keys {
				if other, dup := seen[k]; dup {
					t.Fatalf("%s given to %s and %s", k, other, s.GetMetadata().GetName())
				}
				seen[k] = s.GetMetadata().GetName()
			}
		}
		return true
	})
}

// A record whose Service update may still land — the Service is still at
// the resourceVersion the record was made for — is not collected however
// old it is; once the Service has moved past that version without using
// it, it is. A record from before that version was kept goes after
// OrphanGrace, as before. (Time alone gave one address to two Services
// when an allocator's update was slower than the grace, or another
// allocator's informer lagged behind it.)
func TestRecordKeptWhileItsUpdateMayLand(t *testing.T) {
	cfg := serviceip.Config{ServiceCIDR: "10.96.0.0/24", OrphanGrace: time.Millisecond, GCPeriod: 100 * time.Millisecond}
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceip"}, Configs: map[string]any{"serviceip": cfg}})
	cl := c.Client(t)
	ctx := context.Background()
	// Headless: the allocator has nothing to do for these two Services, so
	// their records are as an allocator leaves them between its record
	// create and its Service update.
	var pending, legacy *apiv1.Service
	for _, p := range []**apiv1.Service{&pending, &legacy} {
		name := map[**apiv1.Service]string{&pending: "pending", &legacy: "legacy"}[p]
		s, err := client.Create(ctx, cl, svc(name, "ClusterIP", "None"))
		if err != nil {
			t.Fatal(err)
		}
		*p = s
	}
	record := func(ip string, s *apiv1.Service, forRV string) {
		data := map[string]string{"service": "default/" + s.GetMetadata().GetName(), "uid": s.GetMetadata().GetUid()}
		if forRV != "" {
			data["serviceResourceVersion"] = forRV
		}
		if _, err := client.Create(ctx, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "kube-system", Name: "clusterip-" + ip,
			Labels: map[string]string{serviceip.LabelAllocation: "clusterip"}}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	record("10.96.0.50", pending, pending.GetMetadata().GetResourceVersion())
	record("10.96.0.51", legacy, "")
	exists := func(name string) bool {
		_, err := client.Get[*apiv1.ConfigMap](ctx, cl, "kube-system", name)
		return err == nil
	}
	testutil.WaitFor(t, 10*time.Second, "the record without a version collected after the grace", func() bool { return !exists("clusterip-10.96.0.51") })
	// One more: its collection comes after a whole pass over every record.
	record("10.96.0.52", legacy, "")
	testutil.WaitFor(t, 10*time.Second, "a second record without a version collected", func() bool { return !exists("clusterip-10.96.0.52") })
	if !exists("clusterip-10.96.0.50") {
		t.Fatal("the record made for the Service's current resourceVersion was collected: its update could still land")
	}
	pending.Metadata.Labels = map[string]string{"moved": "on"}
	if _, err := client.Update(ctx, cl, pending); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the record collected once the Service moved past its version", func() bool { return !exists("clusterip-10.96.0.50") })
}
