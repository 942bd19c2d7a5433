package proxytest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/vishvananda/netns"
)

// Env is what a scenario runs against.
type Env struct {
	Lab   *Lab
	Proxy *netproxy.Proxy
	// NewProxy makes another proxy with the same configuration (restart).
	NewProxy func() (*netproxy.Proxy, error)
	// IPVS: also check the kernel's IPVS table (/proc/net/ip_vs).
	IPVS bool
	Logf func(format string, args ...any)
}

// Scenario is one behaviour both backends must show.
type Scenario struct {
	Name string
	Run  func(ctx context.Context, e *Env) error
}

// Scenarios lists them; each uses its own ClusterIP so they may run in any
// order against one proxy.
func Scenarios() []Scenario {
	return []Scenario{
		{"RoundRobin", roundRobin},
		{"UDP", udp},
		{"NodePort", nodePort},
		{"Hairpin", hairpin},
		{"SessionAffinity", affinity},
		{"EndpointRemovedGraceful", graceful},
		{"NoEndpointsRefused", noEndpoints},
		{"RestartKeepsTraffic", restart},
		{"IncrementalChange", incremental},
		{"NetworkPolicyViaClusterIP", policyViaClusterIP},
	}
}

// ServiceFor builds a one-port Service.
func ServiceFor(name, vip string, proto netproxy.Protocol, port, nodePort uint16, affinity time.Duration) netproxy.Service {
	return netproxy.Service{ServiceKey: netproxy.ServiceKey{Namespace: "test", Name: name},
		ClusterIPs:      []netip.Addr{netip.MustParseAddr(vip)},
		Ports:           []netproxy.ServicePort{{Name: "p", Protocol: proto, Port: port, TargetPort: BackendPort, NodePort: nodePort}},
		AffinityTimeout: affinity}
}

// EndpointsFor lists the given backends as ready.
func EndpointsFor(name string, bs ...*Backend) netproxy.Endpoints {
	e := netproxy.Endpoints{ServiceKey: netproxy.ServiceKey{Namespace: "test", Name: name}}
	for _, b := range bs {
		e.Endpoints = append(e.Endpoints, netproxy.Endpoint{IP: b.IP, Ready: true})
	}
	return e
}

func (e *Env) apply(ctx context.Context, svc netproxy.Service, eps netproxy.Endpoints) error {
	if err := e.Proxy.SetService(svc); err != nil {
		return err
	}
	if err := e.Proxy.SetEndpoints(eps); err != nil {
		return err
	}
	return e.Proxy.Sync(ctx)
}

// evenSplit checks that n answers were spread over every backend as round
// robin does (each within one of n/len).
func evenSplit(counts map[string]int, bs []*Backend, n int) error {
	total := 0
	for _, b := range bs {
		c := counts[b.Name]
		total += c
		if d := c - n/len(bs); d < -1 || d > 1 {
			return fmt.Errorf("not round robin: %v over %d backends for %d requests", counts, len(bs), n)
		}
	}
	if total != n {
		return fmt.Errorf("answers from unexpected servers: %v", counts)
	}
	return nil
}

func roundRobin(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	if err := e.apply(ctx, ServiceFor("rr", "10.96.0.10", netproxy.TCP, 80, 0, 0), EndpointsFor("rr", bs...)); err != nil {
		return err
	}
	n := 10 * len(bs)
	counts, err := Hits(e.Lab.Client, "tcp", "10.96.0.10:80", n)
	if err != nil {
		return err
	}
	e.Logf("round robin over %d backends: %v", len(bs), counts)
	if err := evenSplit(counts, bs, n); err != nil {
		return err
	}
	if e.IPVS {
		return e.checkIPVS("TCP 10.96.0.10:80", func(d map[string]int) error {
			for _, b := range bs {
				if d[addrPort(b)] != 1 {
					return fmt.Errorf("real server %s weight %d, want 1", addrPort(b), d[addrPort(b)])
				}
			}
			return nil
		})
	}
	return nil
}

func udp(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	if err := e.apply(ctx, ServiceFor("dns", "10.96.0.11", netproxy.UDP, 53, 0, 0), EndpointsFor("dns", bs...)); err != nil {
		return err
	}
	n := 10 * len(bs)
	counts, err := Hits(e.Lab.Client, "udp", "10.96.0.11:53", n)
	if err != nil {
		return err
	}
	e.Logf("UDP over %d backends: %v", len(bs), counts)
	if err := evenSplit(counts, bs, n); err != nil {
		return err
	}
	if e.IPVS {
		return e.checkIPVS("UDP 10.96.0.11:53", func(d map[string]int) error {
			if len(d) != len(bs) {
				return fmt.Errorf("%d real servers, want %d", len(d), len(bs))
			}
			return nil
		})
	}
	return nil
}

func nodePort(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	if err := e.apply(ctx, ServiceFor("np", "10.96.0.12", netproxy.TCP, 80, 30080, 0), EndpointsFor("np", bs...)); err != nil {
		return err
	}
	// every node address answers: the client-facing one and a backend-facing one
	for _, nodeIP := range []netip.Addr{NodeClientSide, bs[0].NodeIP} {
		addr := netip.AddrPortFrom(nodeIP, 30080).String()
		n := 10 * len(bs)
		counts, err := Hits(e.Lab.Client, "tcp", addr, n)
		if err != nil {
			return err
		}
		e.Logf("NodePort %s: %v", addr, counts)
		if err := evenSplit(counts, bs, n); err != nil {
			return fmt.Errorf("NodePort %s: %w", addr, err)
		}
		if e.IPVS {
			if err := e.checkIPVS("TCP "+addr, func(d map[string]int) error {
				if len(d) != len(bs) {
					return fmt.Errorf("%d real servers, want %d", len(d), len(bs))
				}
				return nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

func hairpin(ctx context.Context, e *Env) error {
	self := e.Lab.Backends[0]
	if err := e.apply(ctx, ServiceFor("hp", "10.96.0.13", netproxy.TCP, 80, 0, 0), EndpointsFor("hp", self)); err != nil {
		return err
	}
	// the only endpoint calls its own Service: only SNAT makes this work
	counts, err := Hits(self.NS, "tcp", "10.96.0.13:80", 3)
	if err != nil {
		return fmt.Errorf("hairpin from %s: %w", self.Name, err)
	}
	if counts[self.Name] != 3 {
		return fmt.Errorf("hairpin: answers %v, want all from %s", counts, self.Name)
	}
	// and an endpoint reaching the others of a shared Service
	if err := e.apply(ctx, ServiceFor("hp", "10.96.0.13", netproxy.TCP, 80, 0, 0), EndpointsFor("hp", e.Lab.Backends...)); err != nil {
		return err
	}
	n := 3 * len(e.Lab.Backends)
	counts, err = Hits(self.NS, "tcp", "10.96.0.13:80", n)
	if err != nil {
		return fmt.Errorf("from %s to its shared service: %w", self.Name, err)
	}
	e.Logf("hairpin ok; from %s over all: %v", self.Name, counts)
	return evenSplit(counts, e.Lab.Backends, n)
}

func affinity(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	if err := e.apply(ctx, ServiceFor("aff", "10.96.0.14", netproxy.TCP, 80, 0, time.Minute), EndpointsFor("aff", bs...)); err != nil {
		return err
	}
	counts, err := Hits(e.Lab.Client, "tcp", "10.96.0.14:80", 10)
	if err != nil {
		return err
	}
	if len(counts) != 1 {
		return fmt.Errorf("session affinity: one client reached %v, want one backend", counts)
	}
	var stuck string
	for name := range counts {
		stuck = name
	}
	e.Logf("affinity: client stuck to %s", stuck)
	if e.IPVS {
		if err := e.checkIPVSFlags("TCP 10.96.0.14:80", "persistent"); err != nil {
			return err
		}
	}
	// the endpoint leaves: the client moves, and sticks to its new one
	var rest []*Backend
	for _, b := range bs {
		if b.Name != stuck {
			rest = append(rest, b)
		}
	}
	if err := e.apply(ctx, ServiceFor("aff", "10.96.0.14", netproxy.TCP, 80, 0, time.Minute), EndpointsFor("aff", rest...)); err != nil {
		return err
	}
	counts, err = Hits(e.Lab.Client, "tcp", "10.96.0.14:80", 10)
	if err != nil {
		return err
	}
	if len(counts) != 1 || counts[stuck] != 0 {
		return fmt.Errorf("after %s left: %v, want one other backend", stuck, counts)
	}
	e.Logf("affinity after %s left: %v", stuck, counts)
	return nil
}

func graceful(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	if err := e.apply(ctx, ServiceFor("gr", "10.96.0.15", netproxy.TCP, 80, 0, 0), EndpointsFor("gr", bs...)); err != nil {
		return err
	}
	open, err := Dial(e.Lab.Client, "10.96.0.15:80")
	if err != nil {
		return err
	}
	defer open.Close()
	var leaving *Backend
	var rest []*Backend
	for _, b := range bs {
		if b.Name == open.Backend {
			leaving = b
		} else {
			rest = append(rest, b)
		}
	}
	if leaving == nil {
		return fmt.Errorf("open connection answered by unknown %q", open.Backend)
	}
	if err := e.apply(ctx, ServiceFor("gr", "10.96.0.15", netproxy.TCP, 80, 0, 0), EndpointsFor("gr", rest...)); err != nil {
		return err
	}
	n := 10 * len(rest)
	counts, err := Hits(e.Lab.Client, "tcp", "10.96.0.15:80", n)
	if err != nil {
		return err
	}
	if counts[leaving.Name] != 0 {
		return fmt.Errorf("removed endpoint %s still got %d new connections: %v", leaving.Name, counts[leaving.Name], counts)
	}
	if err := evenSplit(counts, rest, n); err != nil {
		return err
	}
	if err := open.Echo("still-there"); err != nil {
		return fmt.Errorf("open connection to removed endpoint %s broke: %w", leaving.Name, err)
	}
	e.Logf("removed %s: new connections %v; its open connection still echoes", leaving.Name, counts)
	if !e.IPVS {
		return nil
	}
	// IPVS: quiesced (weight 0) while the connection lives, deleted after
	if err := e.checkIPVS("TCP 10.96.0.15:80", func(d map[string]int) error {
		if w, ok := d[addrPort(leaving)]; !ok || w != 0 {
			return fmt.Errorf("draining %s: present=%v weight=%d, want weight 0", addrPort(leaving), ok, w)
		}
		return nil
	}); err != nil {
		return err
	}
	open.Close()
	var last error
	if !testutil.Eventually(15*time.Second, func() bool {
		if last = e.Proxy.Sync(ctx); last != nil {
			return false
		}
		last = e.checkIPVS("TCP 10.96.0.15:80", func(d map[string]int) error {
			if _, ok := d[addrPort(leaving)]; ok {
				return fmt.Errorf("%s still in IPVS after its connection closed", addrPort(leaving))
			}
			return nil
		})
		return last == nil
	}) {
		return fmt.Errorf("drained endpoint not deleted: %w", last)
	}
	e.Logf("IPVS: %s had weight 0 while its connection lived, deleted after it closed", addrPort(leaving))
	return nil
}

func noEndpoints(ctx context.Context, e *Env) error {
	if err := e.apply(ctx, ServiceFor("none", "10.96.0.16", netproxy.TCP, 80, 0, 0), EndpointsFor("none")); err != nil {
		return err
	}
	start := time.Now()
	_, err := Dial(e.Lab.Client, "10.96.0.16:80")
	if err == nil {
		return errors.New("connection to a Service without endpoints succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("want connection refused, got %w", err)
	}
	e.Logf("no endpoints: refused after %s", time.Since(start).Round(time.Millisecond))
	return nil
}

func restart(ctx context.Context, e *Env) error {
	bs := e.Lab.Backends
	if err := e.apply(ctx, ServiceFor("rs", "10.96.0.17", netproxy.TCP, 80, 0, 0), EndpointsFor("rs", bs...)); err != nil {
		return err
	}
	open, err := Dial(e.Lab.Client, "10.96.0.17:80")
	if err != nil {
		return err
	}
	defer open.Close()
	// copy every Service the old proxy had into the new one, as the agent
	// would from its watch after a restart
	p2, err := e.NewProxy()
	if err != nil {
		return err
	}
	defer p2.Close()
	for _, s := range e.Proxy.Services() {
		if err := p2.SetService(s); err != nil {
			return err
		}
	}
	for _, ep := range e.Proxy.AllEndpoints() {
		if err := p2.SetEndpoints(ep); err != nil {
			return err
		}
	}
	if err := p2.FullSync(ctx); err != nil {
		return err
	}
	if st := p2.LastSync(); st.Changed != 0 {
		return fmt.Errorf("restarted proxy changed %d kernel objects on its first full sync, want 0", st.Changed)
	}
	if err := open.Echo("after-restart"); err != nil {
		return fmt.Errorf("open connection broke across restart: %w", err)
	}
	n := 10 * len(bs)
	counts, err := Hits(e.Lab.Client, "tcp", "10.96.0.17:80", n)
	if err != nil {
		return err
	}
	e.Logf("restart: first full sync changed 0 objects (%d owned); open connection kept; %v", p2.LastSync().Rules, counts)
	return evenSplit(counts, bs, n)
}

func addrPort(b *Backend) string { return netip.AddrPortFrom(b.IP, BackendPort).String() }

// IPVSTable is /proc/net/ip_vs parsed: "TCP 10.96.0.10:80" -> service.
type IPVSTable map[string]*IPVSService

// IPVSService is one virtual service.
type IPVSService struct {
	Scheduler string
	Flags     string
	Dests     map[string]int // "ip:port" -> weight
}

// ReadIPVS reads and parses /proc/net/ip_vs as seen from ns.
func ReadIPVS(ns netns.NsHandle) (IPVSTable, error) {
	var raw []byte
	if err := InNS(ns, func() error {
		var err error
		raw, err = readFile("/proc/thread-self/net/ip_vs")
		return err
	}); err != nil {
		return nil, err
	}
	t := IPVSTable{}
	var cur *IPVSService
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP"):
			cur = &IPVSService{Dests: map[string]int{}}
			if len(f) > 2 {
				cur.Scheduler = f[2]
				cur.Flags = strings.Join(f[3:], " ")
			}
			t[f[0]+" "+hexAddr(f[1])] = cur
		case len(f) >= 4 && f[0] == "->" && cur != nil && f[1] != "RemoteAddress:Port":
			w, _ := strconv.Atoi(f[3])
			cur.Dests[hexAddr(f[1])] = w
		}
	}
	return t, nil
}

// hexAddr turns "0A60000A:0050" into "10.96.0.10:80".
func hexAddr(s string) string {
	ip, port, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(ip)
	if !ok || err != nil || len(b) != 4 {
		return s
	}
	p, _ := strconv.ParseUint(port, 16, 16)
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(p)).String()
}

func (e *Env) checkIPVS(vs string, check func(dests map[string]int) error) error {
	t, err := ReadIPVS(e.Lab.Node)
	if err != nil {
		return fmt.Errorf("read /proc/net/ip_vs: %w", err)
	}
	s := t[vs]
	if s == nil {
		return fmt.Errorf("IPVS has no virtual service %s", vs)
	}
	if err := check(s.Dests); err != nil {
		return fmt.Errorf("IPVS %s: %w (table %v)", vs, err, s.Dests)
	}
	return nil
}

// checkIPVSFlags looks for want in the service's flags column (/proc shows
// the persistence timeout in jiffies, so only the word is portable).
func (e *Env) checkIPVSFlags(vs, want string) error {
	t, err := ReadIPVS(e.Lab.Node)
	if err != nil {
		return err
	}
	if s := t[vs]; s == nil || !strings.Contains(s.Flags, want) {
		return fmt.Errorf("IPVS %s: flags %+v, want %q", vs, s, want)
	}
	return nil
}
