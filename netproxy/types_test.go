package netproxy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheField(t *testing.T) {
	good := Service{ServiceKey: ServiceKey{"ns", "web"}, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")},
		Ports: []ServicePort{{Protocol: TCP, Port: 80, TargetPort: 8080}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(s *Service){
		"clusterIPs[0]":     func(s *Service) { s.ClusterIPs = []netip.Addr{netip.MustParseAddr("fd00::1")} },
		"ports[0].protocol": func(s *Service) { s.Ports[0].Protocol = "SCTP" },
		"ports[0].port=0":   func(s *Service) { s.Ports[0].Port = 0 },
		"targetPort=0":      func(s *Service) { s.Ports[0].TargetPort = 0 },
		"timeout=500ms":     func(s *Service) { s.AffinityTimeout = 500 * time.Millisecond },
		"declared twice":    func(s *Service) { s.Ports = append(s.Ports, s.Ports[0]) },
	}
	for want, mutate := range cases {
		s := good
		s.Ports = append([]ServicePort(nil), good.Ports...)
		mutate(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestDesiredSplitsReadyAndTerminating(t *testing.T) {
	k := ServiceKey{"ns", "web"}
	svcs := map[ServiceKey]Service{k: {ServiceKey: k, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")},
		Ports: []ServicePort{{Protocol: TCP, Port: 80, TargetPort: 8080}, {Protocol: UDP, Port: 53, TargetPort: 5353}}}}
	eps := map[ServiceKey]Endpoints{k: {ServiceKey: k, Endpoints: []Endpoint{
		{IP: netip.MustParseAddr("10.1.0.3"), Ready: true},
		{IP: netip.MustParseAddr("10.1.0.2"), Ready: true},
		{IP: netip.MustParseAddr("10.1.0.4"), Ready: true, Terminating: true},
		{IP: netip.MustParseAddr("10.1.0.5")},
	}}}
	d := buildDesired(svcs, eps)
	tcp := d["ns/web:TCP/80"]
	if tcp == nil || len(d) != 2 {
		t.Fatalf("desired = %v", d)
	}
	if len(tcp.Ready) != 2 || tcp.Ready[0].String() != "10.1.0.2:8080" {
		t.Errorf("ready = %v", tcp.Ready)
	}
	if len(tcp.Terminating) != 2 {
		t.Errorf("terminating = %v", tcp.Terminating)
	}
	if d["ns/web:UDP/53"].Ready[0].Port() != 5353 {
		t.Errorf("udp target port = %v", d["ns/web:UDP/53"].Ready)
	}
}
