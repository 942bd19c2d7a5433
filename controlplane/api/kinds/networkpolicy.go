package kinds

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// NetworkPolicy (networking.k8s.io/v1): every worker enforces it with
// nftables; the API stores it with Kubernetes' defaults and validation.
var _ = define(Kind{
	Name: "NetworkPolicy", Plural: "networkpolicies", Singular: "networkpolicy", ShortNames: []string{"netpol"},
	Group: "networking.k8s.io", APIVersions: []string{"networking.k8s.io/v1"},
	Retired:    map[string]string{"extensions/v1beta1": "removed in Kubernetes 1.16"},
	Namespaced: true,
	newObject:  func() Object { return &apiv1.NetworkPolicy{} },
	columns:    []Column{{Name: "NAME"}, {Name: "POD-SELECTOR"}, {Name: "AGE"}},
}, defaultNetworkPolicy, validateNetworkPolicy, func(p *apiv1.NetworkPolicy, now time.Time) []string {
	sel := SelectorString(p.GetSpec().GetPodSelector())
	return []string{p.GetMetadata().GetName(), sel, age(p.GetMetadata().GetCreationTimestamp(), now)}
})

// defaultNetworkPolicy fills what Kubernetes fills: an empty podSelector,
// policyTypes (Ingress, plus Egress when egress rules exist) and TCP.
func defaultNetworkPolicy(p *apiv1.NetworkPolicy) {
	if p.Spec == nil {
		p.Spec = &apiv1.NetworkPolicySpec{}
	}
	s := p.Spec
	if s.PodSelector == nil {
		s.PodSelector = &apiv1.LabelSelector{}
	}
	if len(s.PolicyTypes) == 0 {
		s.PolicyTypes = []string{"Ingress"}
		if len(s.Egress) > 0 {
			s.PolicyTypes = append(s.PolicyTypes, "Egress")
		}
	}
	tcp := func(ports []*apiv1.NetworkPolicyPort) {
		for _, pt := range ports {
			if pt != nil && pt.Protocol == nil {
				pt.Protocol = ptr("TCP")
			}
		}
	}
	for _, r := range s.Ingress {
		tcp(r.GetPorts())
	}
	for _, r := range s.Egress {
		tcp(r.GetPorts())
	}
}

func validateNetworkPolicy(p *apiv1.NetworkPolicy) FieldErrors {
	s := p.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	errs := validateLabelSelector(s.GetPodSelector(), "spec.podSelector")
	seen := map[string]bool{}
	for i, t := range s.GetPolicyTypes() {
		path := idx("spec.policyTypes", i)
		errs = append(errs, oneOf(path, t, "Ingress", "Egress")...)
		if seen[t] {
			errs = append(errs, Invalid(path, t, "duplicate policy type"))
		}
		seen[t] = true
	}
	for i, r := range s.GetIngress() {
		p := idx("spec.ingress", i)
		errs = append(errs, validateNetworkPolicyPorts(r.GetPorts(), p+".ports")...)
		errs = append(errs, validateNetworkPolicyPeers(r.GetFrom(), p+".from")...)
	}
	for i, r := range s.GetEgress() {
		p := idx("spec.egress", i)
		errs = append(errs, validateNetworkPolicyPorts(r.GetPorts(), p+".ports")...)
		errs = append(errs, validateNetworkPolicyPeers(r.GetTo(), p+".to")...)
	}
	return errs
}

func validateNetworkPolicyPorts(ports []*apiv1.NetworkPolicyPort, path string) FieldErrors {
	var errs FieldErrors
	for i, pt := range ports {
		p := idx(path, i)
		if pt.Protocol != nil {
			errs = append(errs, oneOf(p+".protocol", pt.GetProtocol(), "TCP", "UDP", "SCTP")...)
		}
		if pt.Port != nil {
			errs = append(errs, validateIntOrStringPort(p+".port", pt.GetPort())...)
		}
		if pt.EndPort == nil {
			continue
		}
		start, err := strconv.Atoi(pt.GetPort())
		switch {
		case pt.Port == nil || err != nil:
			errs = append(errs, Invalid(p+".endPort", pt.GetEndPort(), "may only be set with a numeric port"))
		case int(pt.GetEndPort()) < start:
			errs = append(errs, Invalid(p+".endPort", pt.GetEndPort(), "must be greater than or equal to port"))
		default:
			errs = append(errs, validatePort(p+".endPort", pt.GetEndPort())...)
		}
	}
	return errs
}

func validateNetworkPolicyPeers(peers []*apiv1.NetworkPolicyPeer, path string) FieldErrors {
	var errs FieldErrors
	for i, peer := range peers {
		p := idx(path, i)
		selectors := peer.GetPodSelector() != nil || peer.GetNamespaceSelector() != nil
		switch {
		case peer.GetIpBlock() != nil && selectors:
			errs = append(errs, Forbidden(p, "may not specify both ipBlock and another peer"))
		case peer.GetIpBlock() == nil && !selectors:
			errs = append(errs, Required(p, "must specify a peer (podSelector, namespaceSelector or ipBlock)"))
		}
		errs = append(errs, validateLabelSelector(peer.GetPodSelector(), p+".podSelector")...)
		errs = append(errs, validateLabelSelector(peer.GetNamespaceSelector(), p+".namespaceSelector")...)
		if b := peer.GetIpBlock(); b != nil {
			errs = append(errs, validateIPBlock(b, p+".ipBlock")...)
		}
	}
	return errs
}

func validateIPBlock(b *apiv1.IPBlock, path string) FieldErrors {
	if b.GetCidr() == "" {
		return FieldErrors{Required(path+".cidr", "")}
	}
	cidr, err := netip.ParsePrefix(b.GetCidr())
	if err != nil {
		return FieldErrors{Invalid(path+".cidr", b.GetCidr(), "must be a CIDR such as 10.0.0.0/16")}
	}
	var errs FieldErrors
	for i, e := range b.GetExcept() {
		p := idx(path+".except", i)
		ex, err := netip.ParsePrefix(e)
		switch {
		case err != nil:
			errs = append(errs, Invalid(p, e, "must be a CIDR such as 10.0.1.0/24"))
		case ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()):
			errs = append(errs, Invalid(p, e, "must be a strict subset of cidr "+strings.TrimSpace(b.GetCidr())))
		}
	}
	return errs
}
