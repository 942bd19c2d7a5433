package clusterdns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func service(ns, name, clusterIP string, ports ...*apiv1.ServicePort) *apiv1.Service {
	return &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name},
		Spec: &apiv1.ServiceSpec{ClusterIP: clusterIP, Ports: ports}}
}

func endpoints(ns, name string, ready []string, notReady ...string) *apiv1.Endpoints {
	ss := &apiv1.EndpointSubset{}
	for _, ip := range ready {
		ss.Addresses = append(ss.Addresses, &apiv1.EndpointAddress{Ip: ip})
	}
	for _, ip := range notReady {
		ss.NotReadyAddresses = append(ss.NotReadyAddresses, &apiv1.EndpointAddress{Ip: ip})
	}
	return &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Subsets: []*apiv1.EndpointSubset{ss}}
}

// values renders an answer section as "TYPE value" strings, sorted.
func values(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, dns.TypeToString[h.Rrtype]+" "+strings.TrimPrefix(rr.String(), h.String()))
	}
	slices.Sort(out)
	return out
}

func lookup(t *testing.T, z *Zone, name string, qtype uint16) Answer {
	t.Helper()
	a, ok := z.Lookup(name, qtype)
	if !ok {
		t.Fatalf("%s %s: not the zone's", name, dns.TypeToString[qtype])
	}
	return a
}

func wantAnswer(t *testing.T, z *Zone, name string, qtype uint16, want ...string) {
	t.Helper()
	a := lookup(t, z, name, qtype)
	if a.Rcode != dns.RcodeSuccess {
		t.Fatalf("%s %s: rcode %s, want NOERROR", name, dns.TypeToString[qtype], dns.RcodeToString[a.Rcode])
	}
	if got := values(a.Answer); !slices.Equal(got, want) {
		t.Fatalf("%s %s: answer %q, want %q", name, dns.TypeToString[qtype], got, want)
	}
}

func wantRcode(t *testing.T, z *Zone, name string, qtype uint16, rcode int) {
	t.Helper()
	a := lookup(t, z, name, qtype)
	if a.Rcode != rcode || len(a.Answer) != 0 {
		t.Fatalf("%s %s: rcode %s with %d answers, want %s and none", name, dns.TypeToString[qtype], dns.RcodeToString[a.Rcode], len(a.Answer), dns.RcodeToString[rcode])
	}
	if len(a.Ns) != 1 || a.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("%s: a negative answer carries the zone's SOA, got %v", name, a.Ns)
	}
}

func TestClusterIPServiceHasARecordSRVAndPTR(t *testing.T) {
	z := NewZone("")
	z.Set(service("shop", "web", "10.96.4.7",
		&apiv1.ServicePort{Name: "http", Port: 80, Protocol: "TCP"},
		&apiv1.ServicePort{Name: "dns", Port: 53, Protocol: "UDP"},
		&apiv1.ServicePort{Port: 9000}), nil, nil)
	wantAnswer(t, z, "web.shop.svc.cluster.local.", dns.TypeA, "A 10.96.4.7")
	wantAnswer(t, z, "_http._tcp.web.shop.svc.cluster.local.", dns.TypeSRV, "SRV 0 100 80 web.shop.svc.cluster.local.")
	wantAnswer(t, z, "_dns._udp.web.shop.svc.cluster.local.", dns.TypeSRV, "SRV 0 100 53 web.shop.svc.cluster.local.")
	if a := lookup(t, z, "_http._tcp.web.shop.svc.cluster.local.", dns.TypeSRV); len(a.Extra) != 1 || values(a.Extra)[0] != "A 10.96.4.7" {
		t.Fatalf("SRV additional section: %v, want the target's A record", a.Extra)
	}
	wantAnswer(t, z, "7.4.96.10.in-addr.arpa.", dns.TypePTR, "PTR web.shop.svc.cluster.local.")
	// The name exists without AAAA: NODATA. Unknown names: NXDOMAIN.
	wantRcode(t, z, "web.shop.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess)
	wantRcode(t, z, "db.shop.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
	wantRcode(t, z, "_http._udp.web.shop.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError)
	wantAnswer(t, z, "cluster.local.", dns.TypeSOA, "SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5")
	wantRcode(t, z, "cluster.local.", dns.TypeA, dns.RcodeSuccess)
	// Empty non-terminals exist (a resolver's search list walks them).
	wantRcode(t, z, "shop.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess)
	wantRcode(t, z, "_tcp.web.shop.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess)
	wantRcode(t, z, "other.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
	// Names outside the cluster, and reverse names it does not hold, are not the zone's.
	for _, n := range []string{"example.com.", "8.8.8.8.in-addr.arpa.", "cluster.local.example.com."} {
		if _, ok := z.Lookup(n, dns.TypeA); ok {
			t.Fatalf("%s answered by the cluster zone", n)
		}
	}
	z.Delete(ServiceKey{"shop", "web"})
	wantRcode(t, z, "web.shop.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
	wantRcode(t, z, "shop.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
	if _, ok := z.Lookup("7.4.96.10.in-addr.arpa.", dns.TypePTR); ok {
		t.Fatal("PTR of a deleted Service still answered")
	}
}

func TestServiceWithoutClusterIPYetHasNoName(t *testing.T) {
	z := NewZone("")
	z.Set(service("shop", "web", ""), nil, nil)
	wantRcode(t, z, "web.shop.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
}

func TestHeadlessServiceAnswersReadyEndpointsAndPodHostnames(t *testing.T) {
	z := NewZone("")
	svc := service("db", "pg", "None", &apiv1.ServicePort{Name: "sql", Port: 5432})
	pods := []PodHost{
		{Hostname: "pg-0", IP: netip.MustParseAddr("10.244.1.5"), Ready: true},
		{Hostname: "pg-1", IP: netip.MustParseAddr("10.244.2.9"), Ready: false},
	}
	z.Set(svc, endpoints("db", "pg", []string{"10.244.1.5", "10.244.3.3"}, "10.244.2.9"), pods)
	wantAnswer(t, z, "pg.db.svc.cluster.local.", dns.TypeA, "A 10.244.1.5", "A 10.244.3.3")
	wantAnswer(t, z, "pg-0.pg.db.svc.cluster.local.", dns.TypeA, "A 10.244.1.5")
	wantAnswer(t, z, "10-244-3-3.pg.db.svc.cluster.local.", dns.TypeA, "A 10.244.3.3")
	// A not-ready pod is not published (its Service does not publish not-ready addresses).
	wantRcode(t, z, "pg-1.pg.db.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
	wantAnswer(t, z, "_sql._tcp.pg.db.svc.cluster.local.", dns.TypeSRV,
		"SRV 0 50 5432 10-244-3-3.pg.db.svc.cluster.local.", "SRV 0 50 5432 pg-0.pg.db.svc.cluster.local.")
	wantAnswer(t, z, "5.1.244.10.in-addr.arpa.", dns.TypePTR, "PTR pg-0.pg.db.svc.cluster.local.")

	svc.Spec.PublishNotReadyAddresses = true
	z.Set(svc, endpoints("db", "pg", []string{"10.244.1.5"}, "10.244.2.9"), pods)
	wantAnswer(t, z, "pg-1.pg.db.svc.cluster.local.", dns.TypeA, "A 10.244.2.9")
	wantAnswer(t, z, "pg.db.svc.cluster.local.", dns.TypeA, "A 10.244.1.5", "A 10.244.2.9")
	wantRcode(t, z, "10-244-3-3.pg.db.svc.cluster.local.", dns.TypeA, dns.RcodeNameError)
}

func TestHeadlessServiceWithoutEndpointsExists(t *testing.T) {
	z := NewZone("")
	z.Set(service("db", "pg", "None"), nil, nil)
	wantRcode(t, z, "pg.db.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess)
}

func TestPodReadyBeforeEndpointsIsPublishedByHostname(t *testing.T) {
	z := NewZone("")
	z.Set(service("db", "pg", "None"), nil, []PodHost{{Hostname: "pg-0", IP: netip.MustParseAddr("10.244.1.5"), Ready: true}})
	wantAnswer(t, z, "pg-0.pg.db.svc.cluster.local.", dns.TypeA, "A 10.244.1.5")
}

func TestExternalNameIsACNAME(t *testing.T) {
	z := NewZone("")
	svc := service("shop", "pay", "")
	svc.Spec.Type, svc.Spec.ExternalName = "ExternalName", "Pay.Example.COM"
	z.Set(svc, nil, nil)
	a := lookup(t, z, "pay.shop.svc.cluster.local.", dns.TypeA)
	if got := values(a.Answer); !slices.Equal(got, []string{"CNAME pay.example.com."}) || a.CNAME != "pay.example.com." {
		t.Fatalf("ExternalName answer %q (follow %q), want the CNAME to pay.example.com.", got, a.CNAME)
	}
}

func TestPodIPNames(t *testing.T) {
	z := NewZone("")
	wantAnswer(t, z, "10-244-1-5.shop.pod.cluster.local.", dns.TypeA, "A 10.244.1.5")
	wantRcode(t, z, "10-244-1.shop.pod.cluster.local.", dns.TypeA, dns.RcodeNameError)
}

func TestDomainIsConfigurable(t *testing.T) {
	z := NewZone("Corp.Example.")
	z.Set(service("shop", "web", "10.96.4.7"), nil, nil)
	wantAnswer(t, z, "web.shop.svc.corp.example.", dns.TypeA, "A 10.96.4.7")
	if _, ok := z.Lookup("web.shop.svc.cluster.local.", dns.TypeA); ok {
		t.Fatal("cluster.local answered by a zone for corp.example")
	}
	wantAnswer(t, z, "7.4.96.10.in-addr.arpa.", dns.TypePTR, "PTR web.shop.svc.corp.example.")
}
