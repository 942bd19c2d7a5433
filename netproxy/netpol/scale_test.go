package netpol_test

import (
	"fmt"
	"os"
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
	step := func(what string) {
		t.Helper()
		start := time.Now()
		m := netpol.Compile(in)
		compiled := time.Since(start)
		if _, err := prog.Apply(m); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(start)
		elems := 0
		for _, s := range m.Sets {
			elems += len(s.Addrs) + len(s.Ranges) + len(s.Tuples)
		}
		t.Logf("netpol-scale: %s: %d pods, %d policies, %d rules, %d set elements: compile %.1f ms, compile+commit %.1f ms",
			what, len(in.Pods), len(in.Policies), len(m.Rules), elems, ms(compiled), ms(took))
		if took > 100*time.Millisecond {
			t.Errorf("%s took %v, want under 100 ms", what, took)
		}
	}
	step("first program")
	in.Policies = append(in.Policies, policy(policies))
	step("one policy added (table rewritten)")
	in.Pods = append(in.Pods, &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "ns1", Name: "new", Labels: map[string]string{"app": "a1"}},
		Spec: &apiv1.PodSpec{NodeName: "n0"}, Status: &apiv1.PodStatus{PodIP: "10.99.0.1", Phase: "Running"}})
	step("one local pod added (sets only)")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
