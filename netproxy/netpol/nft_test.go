package netpol_test

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/skiffhq/skiff/netproxy/netpol"
	"github.com/skiffhq/skiff/netproxy/proxytest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/vishvananda/netns"
)

// Root test: the Programmer's table in a lab's node namespace (routed
// links to a client and three backends, no route out) decides real TCP
// and UDP connections between them as the model says.
func TestProgrammerEnforcesInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	lab, err := proxytest.NewLab(3)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(lab.Close)
	if err := lab.StartServers(); err != nil {
		t.Fatalf("servers: %v", err)
	}
	prog, err := netpol.NewProgrammer(lab.Node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prog.Delete(); _ = prog.Close() })

	pod := func(name, ip string, labels map[string]string) *apiv1.Pod {
		return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: name, Labels: labels},
			Spec: &apiv1.PodSpec{NodeName: "n", Containers: []*apiv1.Container{{Name: "c",
				Ports: []*apiv1.ContainerPort{{Name: "echo", ContainerPort: proxytest.BackendPort, Protocol: "UDP"}}}}},
			Status: &apiv1.PodStatus{PodIP: ip, Phase: "Running"}}
	}
	pods := []*apiv1.Pod{pod("client", proxytest.ClientIP.String(), map[string]string{"role": "client"})}
	for _, b := range lab.Backends {
		pods = append(pods, pod(b.Name, b.IP.String(), map[string]string{"app": b.Name}))
	}
	in := netpol.Input{Node: "n", Pods: pods, Namespaces: []*apiv1.Namespace{{Metadata: &apiv1.ObjectMeta{Name: "a"}}}}
	apply := func(pols ...*apiv1.NetworkPolicy) {
		t.Helper()
		in.Policies = pols
		start := time.Now()
		if _, err := prog.Apply(netpol.Compile(in)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		t.Logf("applied %d policies in %v", len(pols), time.Since(start))
	}
	be := func(i int) string { return fmt.Sprintf("%s:%d", lab.Backends[i].IP, proxytest.BackendPort) }
	expect := func(what string, ns netns.NsHandle, proto, addr string, want bool) {
		t.Helper()
		got := reach(ns, proto, addr) == nil
		// On a loaded machine an allowed exchange may miss the deadline:
		// try it again before calling it denied.
		for try := 0; !got && want && try < 2; try++ {
			got = reach(ns, proto, addr) == nil
		}
		if got != want {
			t.Errorf("%s: %s %s reachable=%v, want %v", what, proto, addr, got, want)
		}
	}
	apply() // the table with no policy: conntrack now sees every connection
	expect("no policy", lab.Client, "tcp", be(0), true)
	expect("no policy", lab.Client, "tcp", be(1), true)
	expect("no policy, backend to client's peer", lab.Backends[2].NS, "tcp", be(0), true)

	// An open connection to be1 survives its isolation (established).
	open, err := proxytest.Dial(lab.Client, be(1))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	sel := func(k, v string) *apiv1.LabelSelector {
		return &apiv1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
	port := func(p string) *string { return &p }
	udp := "UDP"
	denyBe2 := &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "deny-be2"},
		Spec: &apiv1.NetworkPolicySpec{PodSelector: sel("app", "be2"), PolicyTypes: []string{"Ingress"}}}
	be1FromClient := &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "be1"},
		Spec: &apiv1.NetworkPolicySpec{PodSelector: sel("app", "be1"), Ingress: []*apiv1.NetworkPolicyIngressRule{
			{From: []*apiv1.NetworkPolicyPeer{{PodSelector: sel("role", "client")}}, Ports: []*apiv1.NetworkPolicyPort{{Port: port("8080")}}},
			{From: []*apiv1.NetworkPolicyPeer{{IpBlock: &apiv1.IPBlock{Cidr: "0.0.0.0/0", Except: []string{"10.1.3.0/24"}}}},
				Ports: []*apiv1.NetworkPolicyPort{{Protocol: &udp, Port: port("echo")}}}}}}
	apply(denyBe2, be1FromClient)
	expect("be2 isolated", lab.Client, "tcp", be(1), false)
	expect("be2 isolated", lab.Backends[0].NS, "tcp", be(1), false)
	if err := open.Echo("still"); err != nil {
		t.Errorf("established connection to the isolated be2 cut: %v", err)
	}
	expect("be1 from the client pod", lab.Client, "tcp", be(0), true)
	expect("be1 from be3, not a client", lab.Backends[2].NS, "tcp", be(0), false)
	expect("be1 udp named port from 0.0.0.0/0", lab.Client, "udp", be(0), true)
	expect("be1 udp named port, be3 in except", lab.Backends[2].NS, "udp", be(0), false)
	expect("be3 not selected", lab.Client, "tcp", be(2), true)

	// Egress: the client may reach only be3.
	egress := &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "client-out"},
		Spec: &apiv1.NetworkPolicySpec{PodSelector: sel("role", "client"), PolicyTypes: []string{"Egress"},
			Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{PodSelector: sel("app", "be3")}}}}}}
	apply(denyBe2, be1FromClient, egress)
	expect("client egress to be3", lab.Client, "tcp", be(2), true)
	expect("client egress to be1", lab.Client, "tcp", be(0), false)
	expect("be3 to be1 unaffected by client egress", lab.Backends[2].NS, "udp", be(0), false)
	expect("be1 to be3", lab.Backends[0].NS, "tcp", be(2), true)

	// Pod churn changes sets only: be3 leaves the egress peers.
	in.Pods = pods[:3]
	start := time.Now()
	if _, err := prog.Apply(netpol.Compile(in)); err != nil {
		t.Fatal(err)
	}
	t.Logf("set-only update in %v", time.Since(start))
	expect("be3 gone from the peers", lab.Client, "tcp", be(2), false)

	// One policy gone, one changed in place: only their rules change.
	apply(denyBe2, egress)
	expect("be1's policy gone", lab.Backends[2].NS, "udp", be(0), true)
	expect("client egress still limited", lab.Client, "tcp", be(0), false)
	egress.Spec.Egress[0].To[0].PodSelector = sel("app", "be1")
	apply(denyBe2, egress)
	expect("client egress changed to be1", lab.Client, "tcp", be(0), true)
	expect("be2 still isolated", lab.Backends[0].NS, "tcp", be(1), false)

	apply()
	expect("policies removed", lab.Client, "tcp", be(1), true)
	expect("policies removed", lab.Backends[2].NS, "udp", be(0), true)
}

// reach makes one short connection (TCP) or exchange (UDP) from ns.
func reach(ns netns.NsHandle, proto, addr string) error {
	return proxytest.InNS(ns, func() error {
		c, err := net.DialTimeout(proto+"4", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("who")); err != nil {
				return err
			}
		}
		buf := make([]byte, 64)
		_, err = c.Read(buf)
		return err
	})
}
