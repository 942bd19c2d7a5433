package kinds

import (
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestNetworkPolicyDefaultsAndValidation(t *testing.T) {
	k, ok := NewRegistry().ForKind("NetworkPolicy")
	if !ok {
		t.Fatal("NetworkPolicy not registered")
	}
	s := func(v string) *string { return &v }
	i := func(v int32) *int32 { return &v }
	sel := &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	for _, tc := range []struct {
		name string
		spec *apiv1.NetworkPolicySpec
		want string // "" valid, else a substring of the errors
	}{
		{"deny all", &apiv1.NetworkPolicySpec{}, ""},
		{"full", &apiv1.NetworkPolicySpec{PodSelector: sel, Ingress: []*apiv1.NetworkPolicyIngressRule{{
			Ports: []*apiv1.NetworkPolicyPort{{Port: s("80")}, {Port: s("http")}, {Protocol: s("UDP"), Port: s("1000"), EndPort: i(2000)}},
			From: []*apiv1.NetworkPolicyPeer{{PodSelector: sel, NamespaceSelector: &apiv1.LabelSelector{}},
				{IpBlock: &apiv1.IPBlock{Cidr: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}}}}, ""},
		{"bad type", &apiv1.NetworkPolicySpec{PolicyTypes: []string{"Both"}}, "spec.policyTypes[0]"},
		{"dup type", &apiv1.NetworkPolicySpec{PolicyTypes: []string{"Egress", "Egress"}}, "duplicate"},
		{"bad protocol", &apiv1.NetworkPolicySpec{Egress: []*apiv1.NetworkPolicyEgressRule{{Ports: []*apiv1.NetworkPolicyPort{{Protocol: s("ICMP")}}}}}, "spec.egress[0].ports[0].protocol"},
		{"bad port", &apiv1.NetworkPolicySpec{Ingress: []*apiv1.NetworkPolicyIngressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: s("70000")}}}}}, "spec.ingress[0].ports[0].port"},
		{"endPort with name", &apiv1.NetworkPolicySpec{Ingress: []*apiv1.NetworkPolicyIngressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: s("http"), EndPort: i(90)}}}}}, "spec.ingress[0].ports[0].endPort"},
		{"endPort below", &apiv1.NetworkPolicySpec{Ingress: []*apiv1.NetworkPolicyIngressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: s("90"), EndPort: i(80)}}}}}, "greater than or equal"},
		{"empty peer", &apiv1.NetworkPolicySpec{Ingress: []*apiv1.NetworkPolicyIngressRule{{From: []*apiv1.NetworkPolicyPeer{{}}}}}, "spec.ingress[0].from[0]"},
		{"ipBlock and selector", &apiv1.NetworkPolicySpec{Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{PodSelector: sel, IpBlock: &apiv1.IPBlock{Cidr: "10.0.0.0/8"}}}}}}, "spec.egress[0].to[0]"},
		{"bad cidr", &apiv1.NetworkPolicySpec{Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{IpBlock: &apiv1.IPBlock{Cidr: "10.0.0.300/8"}}}}}}, "spec.egress[0].to[0].ipBlock.cidr"},
		{"except outside", &apiv1.NetworkPolicySpec{Egress: []*apiv1.NetworkPolicyEgressRule{{To: []*apiv1.NetworkPolicyPeer{{IpBlock: &apiv1.IPBlock{Cidr: "10.0.0.0/16", Except: []string{"10.2.0.0/24"}}}}}}}, "spec.egress[0].to[0].ipBlock.except[0]"},
		{"bad selector", &apiv1.NetworkPolicySpec{PodSelector: &apiv1.LabelSelector{MatchLabels: map[string]string{"bad key": "x"}}}, "spec.podSelector"},
	} {
		np := &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "default"}, Spec: tc.spec}
		k.Default(np)
		errs := k.Validate(np)
		switch {
		case tc.want == "" && len(errs) > 0:
			t.Errorf("%s: %v, want valid", tc.name, errs)
		case tc.want != "" && (len(errs) == 0 || !strings.Contains(errs.Error(), tc.want)):
			t.Errorf("%s: %v, want an error naming %q", tc.name, errs, tc.want)
		}
	}
	np := &apiv1.NetworkPolicy{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "default"}, Spec: &apiv1.NetworkPolicySpec{
		Egress: []*apiv1.NetworkPolicyEgressRule{{Ports: []*apiv1.NetworkPolicyPort{{Port: s("53")}}}}}}
	k.Default(np)
	if got := strings.Join(np.GetSpec().GetPolicyTypes(), ","); got != "Ingress,Egress" {
		t.Errorf("policyTypes defaulted to %q, want Ingress,Egress", got)
	}
	if np.GetSpec().GetPodSelector() == nil || np.GetSpec().GetEgress()[0].GetPorts()[0].GetProtocol() != "TCP" {
		t.Errorf("defaults missing: %v", np.GetSpec())
	}
}
