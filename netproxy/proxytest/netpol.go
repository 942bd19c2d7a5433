package proxytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/netpol"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/vishvananda/netns"
)

// policyViaClusterIP: NetworkPolicy (netproxy/netpol's table in the node
// namespace) decides connections made through a ClusterIP by the backend
// the Service picks, not by the ClusterIP: the client's egress policy
// allows only the first backend, so a Service whose only endpoint is the
// second must not connect (IPVS sends it on without the forward hook,
// nftables DNATs before it); and a backend whose ingress policy denies
// everyone is not reachable through a Service either.
func policyViaClusterIP(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	prog, err := netpol.NewProgrammer(e.Lab.Node)
	if err != nil {
		return err
	}
	defer func() { _ = prog.Delete(); _ = prog.Close() }()
	pod := func(name string, ip net.IP, labels map[string]string) *apiv1.Pod {
		return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: name, Labels: labels},
			Spec: &apiv1.PodSpec{NodeName: "n"}, Status: &apiv1.PodStatus{PodIP: ip.String(), Phase: "Running"}}
	}
	in := netpol.Input{Node: "n", Namespaces: []*apiv1.Namespace{{Metadata: &apiv1.ObjectMeta{Name: "a"}}},
		Pods: []*apiv1.Pod{pod("client", ClientIP.AsSlice(), map[string]string{"role": "client"})}}
	for _, b := range bs {
		in.Pods = append(in.Pods, pod(b.Name, b.IP.AsSlice(), map[string]string{"app": b.Name}))
	}
	sel := func(k, v string) *apiv1.LabelSelector {
		return &apiv1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
	in.Policies = []*apiv1.NetworkPolicy{
		{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "client-out"}, Spec: &apiv1.NetworkPolicySpec{
			PodSelector: sel("role", "client"), PolicyTypes: []string{"Egress"},
			Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{
				{PodSelector: sel("app", bs[0].Name)}, {PodSelector: sel("app", bs[2].Name)}}}}}},
		{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "deny-third"}, Spec: &apiv1.NetworkPolicySpec{
			PodSelector: sel("app", bs[2].Name), PolicyTypes: []string{"Ingress"}}},
	}
	if _, err := prog.Apply(netpol.Compile(in)); err != nil {
		return fmt.Errorf("program policies: %w", err)
	}
	cases := []struct {
		name, vip string
		backend   *Backend
		want      bool
	}{
		{"np-allowed", "10.96.0.30", bs[0], true},         // egress allows it, no ingress policy
		{"np-egress-denied", "10.96.0.31", bs[1], false},  // not in the client's egress peers
		{"np-ingress-denied", "10.96.0.32", bs[2], false}, // egress allows it, its ingress denies all
	}
	for _, c := range cases {
		if err := e.apply(ctx, ServiceFor(c.name, c.vip, netproxy.TCP, 80, 0, 0), EndpointsFor(c.name, c.backend)); err != nil {
			return err
		}
	}
	var errs []error
	for _, c := range cases {
		for _, addr := range []string{c.vip + ":80", fmt.Sprintf("%s:%d", c.backend.IP, BackendPort)} {
			got := reachable(e.Lab.Client, addr)
			// A loaded machine may miss an allowed exchange's deadline:
			// try again before calling it denied.
			for try := 0; c.want && !got && try < 2; try++ {
				got = reachable(e.Lab.Client, addr)
			}
			e.Logf("%s: client -> %s reachable=%v (want %v)", c.name, addr, got, c.want)
			if got != c.want {
				errs = append(errs, fmt.Errorf("%s: client -> %s reachable=%v, want %v", c.name, addr, got, c.want))
			}
		}
	}
	return errors.Join(errs...)
}

// reachable makes one short connection from ns and reads the server's name.
func reachable(ns netns.NsHandle, addr string) bool {
	return InNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 64))
		return err
	}) == nil
}
