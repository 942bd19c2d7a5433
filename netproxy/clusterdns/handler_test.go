package clusterdns

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUpstream is a real DNS server on loopback answering from a map
// (negative answers with an SOA of minimum 60 s), counting queries.
type fakeUpstream struct {
	addr    string
	queries atomic.Int64
}

func startUpstream(t *testing.T, records map[string]string) *fakeUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		f.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if ip, ok := records[q.Name]; ok && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.ParseIP(ip)}}
		} else {
			if !ok {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
				Ns: "ns.test.", Mbox: "h.test.", Minttl: 60}}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return f
}

func query(h *Handler, name string, qtype uint16) *dns.Msg {
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	return h.Reply(req, true)
}

func TestNamesOutsideTheClusterGoUpstreamAndAreCached(t *testing.T) {
	up := startUpstream(t, map[string]string{"www.example.test.": "192.0.2.10"})
	u := NewUpstream([]string{up.addr}, time.Second)
	now := time.Now()
	u.now = func() time.Time { return now }
	h := &Handler{Zone: NewZone(""), Upstream: u}

	r := query(h, "WWW.example.test.", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || !slices.Equal(values(r.Answer), []string{"A 192.0.2.10"}) {
		t.Fatalf("upstream name: %s %v", dns.RcodeToString[r.Rcode], values(r.Answer))
	}
	if r.Authoritative {
		t.Fatal("a forwarded answer is marked authoritative")
	}
	now = now.Add(20 * time.Second)
	r = query(h, "www.example.test.", dns.TypeA)
	if up.queries.Load() != 1 {
		t.Fatalf("upstream asked %d times, want once (the answer is cached)", up.queries.Load())
	}
	if ttl := r.Answer[0].Header().Ttl; ttl != 100 {
		t.Fatalf("cached answer's TTL %d after 20 s, want 100 (120 counted down)", ttl)
	}

	// Negative answers are cached for the SOA minimum, capped at 30 s.
	for range 3 {
		if r := query(h, "nope.example.test.", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Fatalf("unknown upstream name: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
	}
	if up.queries.Load() != 2 {
		t.Fatalf("upstream asked %d times, want 2 (the NXDOMAIN is cached)", up.queries.Load())
	}
	now = now.Add(31 * time.Second)
	query(h, "nope.example.test.", dns.TypeA)
	if up.queries.Load() != 3 {
		t.Fatalf("upstream asked %d times, want 3 (negative entries live 30 s at most)", up.queries.Load())
	}
}

func TestExternalNameIsFollowedUpstream(t *testing.T) {
	up := startUpstream(t, map[string]string{"pay.example.test.": "192.0.2.20"})
	z := NewZone("")
	svc := service("shop", "pay", "")
	svc.Spec.Type, svc.Spec.ExternalName = "ExternalName", "pay.example.test"
	z.Set(svc, nil, nil)
	h := &Handler{Zone: z, Upstream: NewUpstream([]string{up.addr}, time.Second)}
	r := query(h, "pay.shop.svc.cluster.local.", dns.TypeA)
	want := []string{"A 192.0.2.20", "CNAME pay.example.test."}
	if got := values(r.Answer); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
		t.Fatalf("ExternalName: %s %q, want %q", dns.RcodeToString[r.Rcode], got, want)
	}
}

func TestNoUpstreamFailsAtOnce(t *testing.T) {
	h := &Handler{Zone: NewZone(""), Upstream: NewUpstream(nil, time.Second)}
	start := time.Now()
	r := query(h, "www.example.test.", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("no upstream: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("no upstream took %v to fail, want at once", d)
	}
	// Cluster names still answer.
	h.Zone.Set(service("shop", "web", "10.96.4.7"), nil, nil)
	if r := query(h, "web.shop.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
		t.Fatalf("cluster name without upstream: %v", r)
	}
}

func TestDeadUpstreamFailsWithinTheTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	h := &Handler{Zone: NewZone(""), Upstream: NewUpstream([]string{pc.LocalAddr().String()}, 200*time.Millisecond)}
	start := time.Now()
	if r := query(h, "www.example.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("silent upstream: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("silent upstream took %v, want about the 200 ms timeout", d)
	}
	// The failure is remembered for a moment: a retry fails at once.
	start = time.Now()
	if r := query(h, "www.example.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("retry: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("a retry right after a failure took %v, want at once", d)
	}
}

func TestReadResolvConf(t *testing.T) {
	p := t.TempDir() + "/resolv.conf"
	if err := writeFile(p, "search example.test\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions ndots:2\n"); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResolvConf(p)
	if err != nil || !slices.Equal(got, []string{"192.0.2.53:53", "192.0.2.54:53"}) {
		t.Fatalf("ReadResolvConf: %q, %v", got, err)
	}
	if _, err := ReadResolvConf(p + ".missing"); err == nil {
		t.Fatal("a missing resolv.conf is not an error")
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }

// Only pods (the cluster range) and the node itself may query; any other
// client that routes to the address is REFUSED.
func TestOnlyPodsAndTheNodeMayQuery(t *testing.T) {
	s := &Server{cfg: Config{PodRanges: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	for a, want := range map[string]bool{"10.244.3.7": true, "127.0.0.1": true, "192.0.2.7": false, "10.245.0.1": false} {
		if got := s.allowed(netip.MustParseAddr(a)); got != want {
			t.Errorf("allowed(%s) = %v, want %v", a, got, want)
		}
	}
	zone := NewZone("")
	zone.Set(service("shop", "web", "10.96.4.7"), nil, nil)
	for _, allow := range []bool{true, false} {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h := &Handler{Zone: zone, Upstream: NewUpstream(nil, time.Second), Allow: func(netip.Addr) bool { return allow }}
		srv := &dns.Server{PacketConn: pc, Handler: h}
		go srv.ActivateAndServe()
		m := new(dns.Msg)
		m.SetQuestion("web.shop.svc.cluster.local.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, pc.LocalAddr().String())
		srv.Shutdown()
		if err != nil {
			t.Fatal(err)
		}
		want := dns.RcodeSuccess
		if !allow {
			want = dns.RcodeRefused
		}
		if r.Rcode != want || (allow && len(r.Answer) != 1) || (!allow && len(r.Answer) != 0) {
			t.Fatalf("allow=%v: %s with %d answers, want %s", allow, dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[want])
		}
	}
}

// A large answer is truncated over UDP (TC set, the client retries over
// TCP) and whole over TCP.
func TestLargeAnswerTruncatedOverUDPWholeOverTCP(t *testing.T) {
	z := NewZone("")
	var ips []string
	for i := range 100 {
		ips = append(ips, "10.244.0."+strconv.Itoa(i+1))
	}
	z.Set(service("db", "big", "None"), endpoints("db", "big", ips), nil)
	h := &Handler{Zone: z, Upstream: NewUpstream(nil, time.Second)}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp, tcp := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	defer udp.Shutdown()
	defer tcp.Shutdown()
	m := new(dns.Msg)
	m.SetQuestion("big.db.svc.cluster.local.", dns.TypeA)
	r, _, err := (&dns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(m, pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= 100 {
		t.Fatalf("over UDP: truncated=%v with %d answers, want TC and fewer than 100", r.Truncated, len(r.Answer))
	}
	r, _, err = (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("over TCP: truncated=%v with %d answers, want all 100", r.Truncated, len(r.Answer))
	}
}
