package apifeed

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/netproxy"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func i32(v int32) *int32 { return &v }

func TestConvertNamedTargetPortNodePortAffinity(t *testing.T) {
	svc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: &apiv1.ServiceSpec{
		Type: "NodePort", ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
		SessionAffinity: "ClientIP", SessionAffinityConfig: &apiv1.SessionAffinityConfig{ClientIP: &apiv1.ClientIPConfig{TimeoutSeconds: i32(60)}},
		Ports: []*apiv1.ServicePort{
			{Name: "http", Protocol: "TCP", Port: 80, TargetPort: "web", NodePort: 30080},
			{Name: "dns", Protocol: "UDP", Port: 53, TargetPort: "5353"},
			{Name: "sctp", Protocol: "SCTP", Port: 9},
		}}}
	eps := &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: "web"}, Subsets: []*apiv1.EndpointSubset{{
		Addresses:         []*apiv1.EndpointAddress{{Ip: "10.244.1.5"}},
		NotReadyAddresses: []*apiv1.EndpointAddress{{Ip: "10.244.1.6"}},
		Ports:             []*apiv1.EndpointPort{{Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "dns", Port: 5353, Protocol: "UDP"}},
	}}}
	ps, pe, err := Convert(svc, eps)
	if err == nil || !strings.Contains(err.Error(), "fd00::10") || !strings.Contains(err.Error(), "SCTP") {
		t.Errorf("problems not reported: %v", err)
	}
	if ps == nil || pe == nil {
		t.Fatal("nothing converted")
	}
	if len(ps.ClusterIPs) != 1 || ps.ClusterIPs[0] != netip.MustParseAddr("10.96.0.10") {
		t.Errorf("clusterIPs %v", ps.ClusterIPs)
	}
	if ps.AffinityTimeout != time.Minute {
		t.Errorf("affinity %v", ps.AffinityTimeout)
	}
	want := []netproxy.ServicePort{{Name: "http", Protocol: netproxy.TCP, Port: 80, TargetPort: 8080, NodePort: 30080},
		{Name: "dns", Protocol: netproxy.UDP, Port: 53, TargetPort: 5353}}
	if len(ps.Ports) != 2 || ps.Ports[0] != want[0] || ps.Ports[1] != want[1] {
		t.Errorf("ports %+v, want %+v", ps.Ports, want)
	}
	if err := ps.Validate(); err != nil {
		t.Error(err)
	}
	if len(pe.Endpoints) != 2 || !pe.Endpoints[0].Ready || pe.Endpoints[1].Ready {
		t.Errorf("endpoints %+v", pe.Endpoints)
	}
}

func TestConvertSkips(t *testing.T) {
	for name, svc := range map[string]*apiv1.Service{
		"headless":     {Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "h"}, Spec: &apiv1.ServiceSpec{ClusterIP: "None"}},
		"externalName": {Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "e"}, Spec: &apiv1.ServiceSpec{Type: "ExternalName", ExternalName: "x.example"}},
		"unallocated":  {Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "u"}, Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Port: 80}}}},
	} {
		if ps, _, _ := Convert(svc, nil); ps != nil {
			t.Errorf("%s: programmed %+v", name, ps)
		}
	}
	// A named targetPort with no endpoints yet stays valid for the proxy.
	svc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "a", Name: "n"}, Spec: &apiv1.ServiceSpec{ClusterIP: "10.96.0.11",
		Ports: []*apiv1.ServicePort{{Name: "http", Port: 80, TargetPort: "web"}}}}
	ps, pe, err := Convert(svc, nil)
	if err != nil || ps == nil || pe != nil || ps.Validate() != nil {
		t.Errorf("named port without endpoints: %+v %+v %v", ps, pe, err)
	}
}

// The cluster DNS Service is answered on every node itself: the proxy
// programs nothing for its address (a lookup never leaves the node).
func TestConvertLeavesTheClusterDNSServiceToTheNode(t *testing.T) {
	svc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"}, Spec: &apiv1.ServiceSpec{
		ClusterIP: "10.96.0.10", Ports: []*apiv1.ServicePort{{Name: "dns", Protocol: "UDP", Port: 53}}}}
	if ps, pe, err := Convert(svc, nil); ps != nil || pe != nil || err != nil {
		t.Fatalf("kube-dns converted for the proxy: %v %v %v", ps, pe, err)
	}
	svc.Metadata.Namespace = "shop"
	if ps, _, _ := Convert(svc, nil); ps == nil {
		t.Fatal("a Service named kube-dns in another namespace is not programmed")
	}
}
