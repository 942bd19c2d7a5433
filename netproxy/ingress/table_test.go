package ingress

import (
	"crypto/tls"
	"net/netip"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func ptr[T any](v T) *T { return &v }

func backend(svc string, port int32) *apiv1.IngressBackend {
	return &apiv1.IngressBackend{Service: &apiv1.IngressServiceBackend{Name: svc, Port: &apiv1.ServiceBackendPort{Number: port}}}
}

func path(p, typ, svc string) *apiv1.HTTPIngressPath {
	return &apiv1.HTTPIngressPath{Path: p, PathType: typ, Backend: backend(svc, 80)}
}

func rule(host string, paths ...*apiv1.HTTPIngressPath) *apiv1.IngressRule {
	return &apiv1.IngressRule{Host: host, Http: &apiv1.HTTPIngressRuleValue{Paths: paths}}
}

func ing(name, created string, spec *apiv1.IngressSpec) *apiv1.Ingress {
	return &apiv1.Ingress{Metadata: &apiv1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: created}, Spec: spec}
}

// sources gives every Service svc-N one port 80 -> endpoint 10.0.0.N:8080.
func sources(ings ...*apiv1.Ingress) Sources {
	return Sources{Ingresses: ings,
		Services: func(ns, name string) *apiv1.Service {
			return &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name},
				Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Name: "http", Port: 80}}}}
		},
		Endpoints: func(ns, name string) *apiv1.Endpoints {
			ip := "10.0.0." + name[len(name)-1:]
			return &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Subsets: []*apiv1.EndpointSubset{{
				Addresses:         []*apiv1.EndpointAddress{{Ip: ip}},
				NotReadyAddresses: []*apiv1.EndpointAddress{{Ip: "10.9.9.9"}},
				Ports:             []*apiv1.EndpointPort{{Name: "http", Port: 8080}}}}}
		},
	}
}

func name(b *Backend) string {
	if b == nil {
		return "<none>"
	}
	return b.Name
}

func TestRoutePathsAndHosts(t *testing.T) {
	tab := Build(sources(
		ing("a", "2026-01-01T00:00:00Z", &apiv1.IngressSpec{Rules: []*apiv1.IngressRule{
			rule("foo.example.com",
				path("/", "Prefix", "svc-1"),
				path("/api", "Prefix", "svc-2"),
				path("/api/v2/", "Prefix", "svc-3"),
				path("/api", "Exact", "svc-4"),
				path("/x", "ImplementationSpecific", "svc-5")),
			rule("*.wild.example.com", path("/", "Prefix", "svc-6")),
			rule("", path("/only", "Exact", "svc-7")),
		}}),
		// Newer Ingress: same host and path as an older one -> the older wins;
		// its defaultBackend is the fallback only because a has none.
		ing("b", "2026-02-01T00:00:00Z", &apiv1.IngressSpec{DefaultBackend: backend("svc-8", 80), Rules: []*apiv1.IngressRule{
			rule("foo.example.com", path("/api", "Prefix", "svc-9"), path("/new", "Exact", "svc-9")),
		}}),
		// Another class: never served.
		ing("c", "2025-01-01T00:00:00Z", &apiv1.IngressSpec{IngressClassName: ptr("nginx"), Rules: []*apiv1.IngressRule{
			rule("foo.example.com", path("/", "Prefix", "svc-0")),
		}}),
	))
	for _, c := range []struct{ host, path, want string }{
		{"foo.example.com", "/", "ns/svc-1:80"},
		{"FOO.example.com:8080", "/other", "ns/svc-1:80"},
		{"foo.example.com.", "/other", "ns/svc-1:80"},
		{"foo.example.com", "/api", "ns/svc-4:80"},    // Exact beats Prefix of equal length
		{"foo.example.com", "/api/", "ns/svc-2:80"},   // trailing slash: Prefix only
		{"foo.example.com", "/api/v1", "ns/svc-2:80"}, // element-wise prefix
		{"foo.example.com", "/apis", "ns/svc-1:80"},   // not an element of /api
		{"foo.example.com", "/api/v2", "ns/svc-3:80"}, // rule's trailing slash ignored
		{"foo.example.com", "/api/v2/x", "ns/svc-3:80"},
		{"foo.example.com", "/api/v20", "ns/svc-2:80"},
		{"foo.example.com", "/x/y", "ns/svc-5:80"}, // ImplementationSpecific = Prefix
		{"foo.example.com", "/new", "ns/svc-9:80"}, // merged from the newer Ingress
		{"a.wild.example.com", "/z", "ns/svc-6:80"},
		{"a.b.wild.example.com", "/z", "ns/svc-8:80"}, // a wildcard covers one label
		{"wild.example.com", "/z", "ns/svc-8:80"},
		{"other.example.com", "/only", "ns/svc-7:80"}, // host-less rule
		{"other.example.com", "/only/more", "ns/svc-8:80"},
		{"other.example.com", "/", "ns/svc-8:80"}, // default backend
	} {
		if got := name(tab.Route(c.host, c.path)); got != c.want {
			t.Errorf("Route(%q, %q) = %s, want %s", c.host, c.path, got, c.want)
		}
	}
	b := tab.Route("foo.example.com", "/")
	if want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080")}; len(b.Endpoints) != 1 || b.Endpoints[0] != want[0] {
		t.Errorf("endpoints of svc-1 = %v, want %v (ready only, the Service port's target)", b.Endpoints, want)
	}
}

func TestRouteNoMatchAndRoundRobin(t *testing.T) {
	tab := Build(sources(ing("a", "t", &apiv1.IngressSpec{Rules: []*apiv1.IngressRule{rule("h", path("/p", "Exact", "svc-1"))}})))
	if b := tab.Route("h", "/q"); b != nil {
		t.Fatalf("unmatched path routed to %s, want none (404)", b.Name)
	}
	b := &Backend{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("1.1.1.1:1"), netip.MustParseAddrPort("2.2.2.2:2"), netip.MustParseAddrPort("3.3.3.3:3")}}
	seen := map[netip.AddrPort]int{}
	for range 9 {
		seen[b.pick(b.start(), 0)]++
	}
	for _, ep := range b.Endpoints {
		if seen[ep] != 3 {
			t.Errorf("round robin over 9 requests gave %v, want 3 each", seen)
		}
	}
	if s := b.start(); b.pick(s, 1) == b.pick(s, 0) {
		t.Errorf("a retry picked the same endpoint")
	}
}

func TestCertificateBySNI(t *testing.T) {
	c1, c2 := &tls.Certificate{}, &tls.Certificate{}
	src := sources(ing("a", "t", &apiv1.IngressSpec{
		Rules: []*apiv1.IngressRule{rule("a.example.com", path("/", "Prefix", "svc-1"))},
		Tls: []*apiv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "one"},
			{Hosts: []string{"*.w.example.com"}, SecretName: "two"},
			{Hosts: []string{"b.example.com"}, SecretName: "missing"}}}))
	src.Certs = map[string]*tls.Certificate{"ns/one": c1, "ns/two": c2}
	tab := Build(src)
	for _, c := range []struct {
		sni  string
		want *tls.Certificate
	}{{"a.example.com", c1}, {"x.w.example.com", c2}, {"", c1}, {"b.example.com", c1}} {
		if got := tab.Certificate(c.sni); got != c.want {
			t.Errorf("Certificate(%q) is not the expected one", c.sni)
		}
	}
	if Build(Sources{}).HasCertificates() {
		t.Error("an empty table has certificates")
	}
}
