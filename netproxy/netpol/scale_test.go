package netpol_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/skiffhq/skiff/netproxy/netpol"
	"github.com/skiffhq/skiff/netproxy/proxytest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Root test: the time from a changed view (a policy added, a pod added)
// to the committed table, at 2,000 pods of which 100 are local, with 100
// policies (each allowing two namespaces' pods, an ipBlock and all pods). Prints one line per step; a step over 100 ms fails.
func TestProgrammerScale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	lab, err := proxytest.NewLab(0)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(lab.Close)
	prog, err := netpol.NewProgrammer(lab.Node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prog.Delete(); _ = prog.Close() })

	const pods, local, policies, namespaces = 2000, 100, 100, 20
	in := netpol.Input{Node: "n0"}
	for i := range namespaces {
		in.Namespaces = append(in.Namespaces, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprintf("ns%d", i),
			Labels: map[string]string{"tier": fmt.Sprint(i % 10)}}})
	}
	for i := range pods {
		node := fmt.Sprintf("n%d", i%(pods/local))
		in.Pods = append(in.Pods, &apiv1.Pod{
			Metadata: &apiv1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%namespaces), Name: fmt.Sprintf("p%d", i),
				Labels: map[string]string{"app": fmt.Sprintf("a%d", i%50)}},
			Spec: &apiv1.PodSpec{NodeName: node, Containers: []*apiv1.Container{{Name: "c",
				Ports: []*apiv1.ContainerPort{{Name: "http", ContainerPort: int32(8000 + i%7)}}}}},
			Status: &apiv1.PodStatus{PodIP: fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256), Phase: "Running"}})
	}
	policy := func(i int) *apiv1.NetworkPolicy {
		port := "http"
		return &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%namespaces), Name: fmt.Sprintf("np%d", i)},
			Spec: &apiv1.NetworkPolicySpec{PodSelector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", i%50)}},
				PolicyTypes: []string{"Ingress", "Egress"},
				Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{
					{NamespaceSelector: &apiv1.LabelSelector{MatchLabels: map[string]string{"tier": fmt.Sprint(i % 10)}}},
					{IpBlock: &apiv1.IPBlock{Cidr: "10.0.0.0/8", Except: []string{fmt.Sprintf("10.%d.0.0/16", 100+i%3)}}}},
					Ports: []*apiv1.NetworkPolicyPort{{Port: &port}}}},
				Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{PodSelector: &apiv1.LabelSelector{}}}}}}}
	}
	for i := range policies {
		in.Policies = append(in.Policies, policy(i))
	}
	// step programs the current input and returns (compile, commit) times.
	step := func(what string) (time.Duration, time.Duration) {
		t.Helper()
		start := time.Now()
		m := netpol.Compile(in)
		compiled := time.Since(start)
		if _, err := prog.Apply(m); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return compiled, time.Since(start) - compiled
	}
	// change applies a change and its undo five times each and reports the
	// median (the machine is shared: single runs are noisy). A change whose
	// median commit takes over 100 ms fails; compile is CPU, shown apart.
	change := func(what string, do, undo func()) {
		t.Helper()
		var compiles, commits []time.Duration
		for range 5 {
			do()
			c, m := step(what)
			compiles, commits = append(compiles, c), append(commits, m)
			undo()
			step("undo " + what)
		}
		slices.Sort(compiles)
		slices.Sort(commits)
		t.Logf("netpol-scale: %s at %d pods (100 local), %d policies: median compile %.1f ms, median commit %.1f ms (max %.1f)",
			what, len(in.Pods), len(in.Policies), ms(compiles[2]), ms(commits[2]), ms(commits[4]))
		if commits[2] > 100*time.Millisecond {
			t.Errorf("%s: median commit %v, want under 100 ms", what, commits[2])
		}
	}
	c, m := step("first program")
	t.Logf("netpol-scale: first program: %d pods, %d policies: compile %.1f ms, commit %.1f ms", len(in.Pods), len(in.Policies), ms(c), ms(m))
	change("one policy added (its rules and sets only)",
		func() { in.Policies = append(in.Policies, policy(policies)) },
		func() { in.Policies = in.Policies[:policies] })
	change("one local pod added (set elements only)",
		func() {
			in.Pods = append(in.Pods, &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "ns1", Name: "new", Labels: map[string]string{"app": "a1"}},
				Spec: &apiv1.PodSpec{NodeName: "n0"}, Status: &apiv1.PodStatus{PodIP: "10.99.0.1", Phase: "Running"}})
		},
		func() { in.Pods = in.Pods[:pods] })
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
