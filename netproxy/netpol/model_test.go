package netpol

import (
	"net/netip"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func testPod(ns, name, node, ip string, labels map[string]string, ports ...*apiv1.ContainerPort) *apiv1.Pod {
	return &apiv1.Pod{
		Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:     &apiv1.PodSpec{NodeName: node, Containers: []*apiv1.Container{{Name: "c", Ports: ports}}},
		Status:   &apiv1.PodStatus{PodIP: ip, Phase: "Running"},
	}
}

func testNS(name string, labels map[string]string) *apiv1.Namespace {
	return &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: name, Labels: labels}}
}

func policy(ns, name string, spec *apiv1.NetworkPolicySpec) *apiv1.NetworkPolicy {
	return &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func sel(kv ...string) *apiv1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &apiv1.LabelSelector{MatchLabels: m}
}

func str(s string) *string { return &s }
func i32(v int32) *int32   { return &v }

// cluster evaluates a connection as the data path does: egress at the
// source's node, ingress at the destination's node.
type cluster struct {
	in    Input
	nodes map[string]*Model
	node  map[string]string // pod name -> node
	ip    map[string]netip.Addr
}

func newCluster(pods []*apiv1.Pod, nss []*apiv1.Namespace, pols ...*apiv1.NetworkPolicy) *cluster {
	c := &cluster{nodes: map[string]*Model{}, node: map[string]string{}, ip: map[string]netip.Addr{}}
	for _, p := range pods {
		c.node[p.GetMetadata().GetName()] = p.GetSpec().GetNodeName()
		c.ip[p.GetMetadata().GetName()] = netip.MustParseAddr(p.GetStatus().GetPodIP())
	}
	for _, n := range []string{"n1", "n2"} {
		c.nodes[n] = Compile(Input{Node: n, Pods: pods, Namespaces: nss, Policies: pols})
	}
	return c
}

func (c *cluster) allows(from, to string, proto uint8, port uint16) bool {
	src, dst := c.ip[from], c.ip[to]
	return c.nodes[c.node[from]].Allows(src, dst, proto, port) && c.nodes[c.node[to]].Allows(src, dst, proto, port)
}

type conn struct {
	from, to string
	proto    uint8
	port     uint16
	want     bool
}

func TestCompileSemantics(t *testing.T) {
	http := &apiv1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: "TCP"}
	dns := &apiv1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: "UDP"}
	pods := []*apiv1.Pod{
		testPod("a", "web", "n1", "10.1.0.2", map[string]string{"app": "web"}, http),
		testPod("a", "client", "n1", "10.1.0.3", map[string]string{"app": "client"}),
		testPod("a", "remote", "n2", "10.2.0.2", map[string]string{"app": "client"}),
		testPod("b", "other", "n2", "10.2.0.3", map[string]string{"app": "client"}, dns),
		testPod("b", "web2", "n2", "10.2.0.4", map[string]string{"app": "web"}, &apiv1.ContainerPort{Name: "http", ContainerPort: 9090}),
	}
	nss := []*apiv1.Namespace{testNS("a", map[string]string{"team": "x"}), testNS("b", map[string]string{"team": "y"})}
	tcp, udp := ProtoTCP, ProtoUDP
	for _, tc := range []struct {
		name  string
		pols  []*apiv1.NetworkPolicy
		conns []conn
	}{
		{"no policy allows everything", nil, []conn{
			{"client", "web", tcp, 8080, true}, {"other", "web", tcp, 1, true}, {"web", "other", udp, 53, true}}},
		{"deny all ingress in a", []*apiv1.NetworkPolicy{policy("a", "deny", &apiv1.NetworkPolicySpec{PodSelector: sel(), PolicyTypes: []string{"Ingress"}})}, []conn{
			{"client", "web", tcp, 8080, false}, {"other", "remote", tcp, 80, false}, {"web", "client", tcp, 80, false},
			{"web", "other", udp, 53, true}, {"client", "web2", tcp, 9090, true}}},
		{"pod selector and port", []*apiv1.NetworkPolicy{policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
			Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}},
				Ports: []*apiv1.NetworkPolicyPort{{Protocol: str("TCP"), Port: str("8080")}}}}})}, []conn{
			{"client", "web", tcp, 8080, true}, {"remote", "web", tcp, 8080, true}, {"client", "web", tcp, 8081, false},
			{"client", "web", udp, 8080, false}, {"other", "web", tcp, 8080, false}, {"web", "client", tcp, 1, true}}},
		{"namespace selector", []*apiv1.NetworkPolicy{policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
			Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "y")}}}}})}, []conn{
			{"other", "web", tcp, 8080, true}, {"web2", "web", tcp, 1, true}, {"client", "web", tcp, 8080, false}}},
		{"namespace name label", []*apiv1.NetworkPolicy{policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
			Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{NamespaceSelector: sel(NamespaceNameLabel, "b")}}}}})}, []conn{
			{"other", "web", tcp, 8080, true}, {"client", "web", tcp, 8080, false}}},
		{"namespace and pod selector combined", []*apiv1.NetworkPolicy{policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
			Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "y"), PodSelector: sel("app", "client")}}}}})}, []conn{
			{"other", "web", tcp, 8080, true}, {"web2", "web", tcp, 8080, false}, {"client", "web", tcp, 8080, false}}},
		{"named port resolved per target pod", []*apiv1.NetworkPolicy{policy("", "x", nil),
			policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
				Ingress: []*apiv1.NetworkPolicyIngressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: str("http")}}}}}),
			policy("b", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
				Ingress: []*apiv1.NetworkPolicyIngressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: str("http")}}}}})}, []conn{
			{"client", "web", tcp, 8080, true}, {"client", "web", tcp, 9090, false}, {"client", "web2", tcp, 9090, true}, {"client", "web2", tcp, 8080, false}}},
		{"port range", []*apiv1.NetworkPolicy{policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
			Ingress: []*apiv1.NetworkPolicyIngressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: str("8000"), EndPort: i32(8100)}}}}})}, []conn{
			{"client", "web", tcp, 8000, true}, {"client", "web", tcp, 8100, true}, {"client", "web", tcp, 8101, false}, {"client", "web", tcp, 7999, false}}},
		{"egress ipBlock with except", []*apiv1.NetworkPolicy{policy("a", "out", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "client"), PolicyTypes: []string{"Egress"},
			Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{IpBlock: &apiv1.IPBlock{Cidr: "10.0.0.0/8", Except: []string{"10.2.0.0/24"}}}}}}})}, []conn{
			{"client", "web", tcp, 80, true}, {"client", "other", tcp, 80, false}, {"remote", "web", tcp, 80, true},
			{"remote", "web2", tcp, 80, false}, {"web", "other", tcp, 80, true}, {"other", "client", tcp, 80, true}}},
		{"egress udp only, named on peer", []*apiv1.NetworkPolicy{policy("a", "dns", &apiv1.NetworkPolicySpec{PodSelector: sel(), PolicyTypes: []string{"Egress"},
			Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{NamespaceSelector: sel()}}, Ports: []*apiv1.NetworkPolicyPort{{Protocol: str("UDP"), Port: str("dns")}}}}})}, []conn{
			{"client", "other", udp, 53, true}, {"client", "other", tcp, 53, false}, {"client", "web2", udp, 53, false}, {"other", "client", tcp, 1, true}}},
		{"egress deny all, ingress untouched", []*apiv1.NetworkPolicy{policy("b", "deny", &apiv1.NetworkPolicySpec{PolicyTypes: []string{"Egress"}})}, []conn{
			{"other", "web", tcp, 80, false}, {"web2", "other", tcp, 80, false}, {"web", "other", tcp, 80, true}}},
		{"union of policies", []*apiv1.NetworkPolicy{
			policy("a", "p1", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"), Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}}}}}),
			policy("a", "p2", &apiv1.NetworkPolicySpec{PodSelector: sel(), Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "y")}}}}})}, []conn{
			{"client", "web", tcp, 1, true}, {"other", "web", tcp, 1, true}, {"web", "client", tcp, 1, false}, {"other", "client", tcp, 1, true}}},
		{"empty rule allows all", []*apiv1.NetworkPolicy{policy("a", "all", &apiv1.NetworkPolicySpec{PodSelector: sel(), Ingress: []*apiv1.NetworkPolicyIngressRule{{}}})}, []conn{
			{"other", "web", tcp, 1, true}, {"client", "web", udp, 9, true}}},
	} {
		c := newCluster(pods, nss, tc.pols...)
		for _, cn := range tc.conns {
			if got := c.allows(cn.from, cn.to, cn.proto, cn.port); got != cn.want {
				t.Errorf("%s: %s -> %s proto %d port %d: allowed=%v, want %v", tc.name, cn.from, cn.to, cn.proto, cn.port, got, cn.want)
			}
		}
	}
}

// A pod coming or going changes set elements only, never the rules.
func TestPodChurnChangesSetsNotStructure(t *testing.T) {
	nss := []*apiv1.Namespace{testNS("a", nil)}
	pols := []*apiv1.NetworkPolicy{policy("a", "web", &apiv1.NetworkPolicySpec{PodSelector: sel("app", "web"),
		Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}},
			Ports: []*apiv1.NetworkPolicyPort{{Port: str("http")}}}}})}
	web := testPod("a", "web", "n1", "10.1.0.2", map[string]string{"app": "web"}, &apiv1.ContainerPort{Name: "http", ContainerPort: 80})
	before := Compile(Input{Node: "n1", Pods: []*apiv1.Pod{web}, Namespaces: nss, Policies: pols})
	after := Compile(Input{Node: "n1", Namespaces: nss, Policies: pols, Pods: []*apiv1.Pod{web,
		testPod("a", "web-2", "n1", "10.1.0.5", map[string]string{"app": "web"}, &apiv1.ContainerPort{Name: "http", ContainerPort: 81}),
		testPod("a", "client", "n2", "10.2.0.9", map[string]string{"app": "client"})}})
	if before.Structure() != after.Structure() {
		t.Fatalf("structure changed with pods:\n%s\nvs\n%s", before.Structure(), after.Structure())
	}
	if len(after.IngressIsolated) != 2 || after.Allows(netip.MustParseAddr("10.2.0.9"), netip.MustParseAddr("10.1.0.5"), ProtoTCP, 81) != true ||
		after.Allows(netip.MustParseAddr("10.2.0.9"), netip.MustParseAddr("10.1.0.5"), ProtoTCP, 80) {
		t.Fatalf("new pods not in the sets: %+v", after)
	}
}

func TestBlockRanges(t *testing.T) {
	got := blockRanges(&apiv1.IPBlock{Cidr: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "10.1.0.0/16", "255.255.255.255/32"}})
	want := []AddrRange{{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("9.255.255.255")},
		{netip.MustParseAddr("11.0.0.0"), netip.MustParseAddr("255.255.255.254")}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	merged := mergeRanges([]AddrRange{{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.5")},
		{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.4")}, {netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.9")}})
	if len(merged) != 2 || merged[0].Last != netip.MustParseAddr("10.0.0.5") {
		t.Fatalf("merged %v", merged)
	}
}

func TestPolicyRelevantPodChanges(t *testing.T) {
	a := testPod("a", "web", "n1", "10.1.0.2", map[string]string{"app": "web"}, &apiv1.ContainerPort{Name: "http", ContainerPort: 80})
	b := testPod("a", "web", "n1", "10.1.0.2", map[string]string{"app": "web"}, &apiv1.ContainerPort{Name: "http", ContainerPort: 80})
	b.Status.Conditions = []*apiv1.PodCondition{{Type: "Ready", Status: "True"}}
	if policyRelevant(a) != policyRelevant(b) {
		t.Error("a readiness change counts as relevant")
	}
	b.Metadata.Labels = map[string]string{"app": "db"}
	if policyRelevant(a) == policyRelevant(b) {
		t.Error("a label change does not count")
	}
	c := testPod("a", "web", "n1", "10.1.0.2", map[string]string{"app": "web"}, &apiv1.ContainerPort{Name: "http", ContainerPort: 80})
	c.Status.Phase = "Failed"
	if policyRelevant(a) == policyRelevant(c) {
		t.Error("a pod ending does not count")
	}
}
