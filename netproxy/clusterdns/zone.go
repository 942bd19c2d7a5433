package clusterdns

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// TTL of every cluster record and of the zone's negative answers (CoreDNS'
// kubernetes plugin uses the same 5 s: records follow the cluster closely).
const TTL = 5

// DefaultDomain is the cluster domain when the cluster names none.
const DefaultDomain = "cluster.local"

// ServiceKey names a Service.
type ServiceKey struct{ Namespace, Name string }

// PodHost is a pod that asked for a DNS name (spec.hostname and
// spec.subdomain): <Hostname>.<subdomain>.<ns>.svc.<domain> answers IP
// while a headless Service named subdomain exists.
type PodHost struct {
	Hostname string
	IP       netip.Addr
	Ready    bool
}

// entry holds the records of one name.
type entry struct {
	owner ServiceKey
	a     []dns.RR
	srv   []dns.RR
	ptr   []dns.RR
	cname dns.RR
	// extra: A records of SRV targets (the additional section).
	extra []dns.RR
}

// Zone holds the cluster's records. It is safe for concurrent use: Set
// and Delete replace one Service's names; Lookup reads.
type Zone struct {
	mu     sync.RWMutex
	domain string // lower case, no trailing dot
	suffix string // "." + domain + "."
	names  map[string]*entry
	owned  map[ServiceKey][]string
	// parents counts the names under each empty non-terminal (svc.<d>,
	// <ns>.svc.<d>, _tcp.<svc>…), which exist (NODATA, not NXDOMAIN).
	parents map[string]int
	soa     dns.RR
}

// NewZone returns an empty zone for domain ("" is DefaultDomain).
func NewZone(domain string) *Zone {
	z := &Zone{}
	z.reset(domain)
	return z
}

func (z *Zone) reset(domain string) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" {
		domain = DefaultDomain
	}
	z.domain, z.suffix = domain, "."+domain+"."
	z.names, z.owned, z.parents = map[string]*entry{}, map[ServiceKey][]string{}, map[string]int{}
	z.soa = &dns.SOA{Hdr: dns.RR_Header{Name: domain + ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: TTL},
		Ns: "ns.dns." + domain + ".", Mbox: "hostmaster." + domain + ".", Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: TTL}
}

// SetDomain empties the zone and moves it to domain (the caller sets
// every Service again).
func (z *Zone) SetDomain(domain string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.reset(domain)
}

// Domain is the zone's cluster domain (no trailing dot).
func (z *Zone) Domain() string {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return z.domain
}

// Delete removes a Service's names.
func (z *Zone) Delete(k ServiceKey) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.drop(k)
}

func (z *Zone) drop(k ServiceKey) {
	for _, n := range z.owned[k] {
		if e := z.names[n]; e != nil && e.owner == k {
			delete(z.names, n)
			z.unparent(n)
		}
	}
	delete(z.owned, k)
}

// Set replaces the names of svc, built from its Endpoints (may be nil) and
// the pods whose spec.subdomain names it.
func (z *Zone) Set(svc *apiv1.Service, eps *apiv1.Endpoints, pods []PodHost) {
	k := ServiceKey{svc.GetMetadata().GetNamespace(), svc.GetMetadata().GetName()}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.drop(k)
	b := builder{z: z, key: k, base: k.Name + "." + k.Namespace + ".svc" + z.suffix, made: map[string]*entry{}}
	b.build(svc, eps, pods)
	for n, e := range b.made {
		if old := z.names[n]; old != nil && old.owner != k {
			continue // another Service's name (a reverse name): first come keeps it
		}
		z.names[n] = e
		z.owned[k] = append(z.owned[k], n)
		z.parent(n)
	}
}

// parent/unparent count n under each of its ancestors inside the domain.
func (z *Zone) parent(n string)   { z.walkParents(n, 1) }
func (z *Zone) unparent(n string) { z.walkParents(n, -1) }

func (z *Zone) walkParents(n string, d int) {
	if !strings.HasSuffix(n, z.suffix) {
		return // reverse names: their parents answer upstream
	}
	for {
		i := strings.IndexByte(n, '.')
		if i < 0 || len(n[i:]) <= len(z.suffix) {
			return
		}
		n = n[i+1:]
		if z.parents[n] += d; z.parents[n] <= 0 {
			delete(z.parents, n)
		}
	}
}

type builder struct {
	z    *Zone
	key  ServiceKey
	base string
	made map[string]*entry
}

func (b *builder) at(name string) *entry {
	e := b.made[name]
	if e == nil {
		e = &entry{owner: b.key}
		b.made[name] = e
	}
	return e
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
}

func aRecord(name string, ip netip.Addr) dns.RR {
	return &dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()}
}

// dashed is Kubernetes' name for an address without a hostname: 10-0-0-1.
func dashed(ip netip.Addr) string { return strings.ReplaceAll(ip.String(), ".", "-") }

// endpoint is one address a headless Service answers with.
type endpoint struct {
	ip       netip.Addr
	hostname string
}

func (b *builder) build(svc *apiv1.Service, eps *apiv1.Endpoints, pods []PodHost) {
	sp := svc.GetSpec()
	if sp.GetType() == "ExternalName" {
		if t := strings.ToLower(sp.GetExternalName()); t != "" {
			b.at(b.base).cname = &dns.CNAME{Hdr: hdr(b.base, dns.TypeCNAME), Target: dns.Fqdn(t)}
		}
		return
	}
	headless := sp.GetClusterIP() == "None"
	var targets []string // SRV targets, each with A records at b.made
	if !headless {
		ips := sp.GetClusterIPs()
		if len(ips) == 0 && sp.GetClusterIP() != "" {
			ips = []string{sp.GetClusterIP()}
		}
		for _, s := range ips {
			ip, err := netip.ParseAddr(s)
			if err != nil || !ip.Is4() {
				continue
			}
			b.at(b.base).a = append(b.at(b.base).a, aRecord(b.base, ip))
			b.ptr(ip, b.base)
		}
		if len(b.made) == 0 {
			return // no address yet: the name does not exist
		}
		targets = []string{b.base}
	} else {
		b.at(b.base) // a headless Service's name exists without endpoints
		for _, ep := range headlessEndpoints(eps, pods, sp.GetPublishNotReadyAddresses()) {
			b.at(b.base).a = append(b.at(b.base).a, aRecord(b.base, ep.ip))
			name := dashed(ep.ip) + "." + b.base
			if ep.hostname != "" {
				name = ep.hostname + "." + b.base
				b.ptr(ep.ip, name)
			}
			b.at(name).a = append(b.at(name).a, aRecord(name, ep.ip))
			targets = append(targets, name)
		}
	}
	for _, p := range sp.GetPorts() {
		if p.GetName() == "" {
			continue
		}
		proto := strings.ToLower(p.GetProtocol())
		if proto == "" {
			proto = "tcp"
		}
		name := "_" + strings.ToLower(p.GetName()) + "._" + proto + "." + b.base
		e := b.at(name)
		for _, t := range targets {
			e.srv = append(e.srv, &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: uint16(100 / len(targets)), Port: uint16(p.GetPort()), Target: t})
			e.extra = append(e.extra, b.made[t].a...)
		}
	}
}

// headlessEndpoints are the addresses of a headless Service: its
// Endpoints' ready addresses (all of them with publishNotReadyAddresses),
// named by the pods that asked for a hostname under it.
func headlessEndpoints(eps *apiv1.Endpoints, pods []PodHost, publishNotReady bool) []endpoint {
	host := map[netip.Addr]string{}
	for _, p := range pods {
		if p.Hostname != "" && p.IP.IsValid() {
			host[p.IP] = strings.ToLower(p.Hostname)
		}
	}
	seen := map[netip.Addr]bool{}
	var out []endpoint
	add := func(addrs []*apiv1.EndpointAddress) {
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a.GetIp())
			if err != nil || !ip.Is4() || seen[ip] {
				continue
			}
			seen[ip] = true
			h := strings.ToLower(a.GetHostname())
			if h == "" {
				h = host[ip]
			}
			out = append(out, endpoint{ip: ip, hostname: h})
		}
	}
	for _, ss := range eps.GetSubsets() {
		add(ss.GetAddresses())
		if publishNotReady {
			add(ss.GetNotReadyAddresses())
		}
	}
	// A pod with a hostname is published as soon as it is ready (or at
	// once with publishNotReadyAddresses), even before the Endpoints
	// controller lists it: a StatefulSet's pods find each other by name.
	for _, p := range pods {
		if p.Hostname == "" || !p.IP.Is4() || seen[p.IP] || !(p.Ready || publishNotReady) {
			continue
		}
		seen[p.IP] = true
		out = append(out, endpoint{ip: p.IP, hostname: strings.ToLower(p.Hostname)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ip.Less(out[j].ip) })
	return out
}

func (b *builder) ptr(ip netip.Addr, target string) {
	name := reverseName(ip)
	e := b.at(name)
	e.ptr = append(e.ptr, &dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: target})
}

// reverseName is ip's in-addr.arpa name.
func reverseName(ip netip.Addr) string {
	a := ip.As4()
	return strconv.Itoa(int(a[3])) + "." + strconv.Itoa(int(a[2])) + "." + strconv.Itoa(int(a[1])) + "." + strconv.Itoa(int(a[0])) + ".in-addr.arpa."
}

// Answer is the zone's reply to one question.
type Answer struct {
	Rcode  int
	Answer []dns.RR
	Ns     []dns.RR
	Extra  []dns.RR
	// CNAME, when set, is an ExternalName's target still to resolve.
	CNAME string
}

// Lookup answers qname (lower case, fully qualified) of type qtype. ok is
// false when the name is not the zone's to answer: outside the cluster
// domain, or a reverse name the cluster does not hold.
func (z *Zone) Lookup(qname string, qtype uint16) (ans Answer, ok bool) {
	z.mu.RLock()
	defer z.mu.RUnlock()
	inDomain := strings.HasSuffix(qname, z.suffix) || qname == z.suffix[1:]
	e := z.names[qname]
	if e == nil && !inDomain {
		return ans, false
	}
	if e == nil {
		if ip, ok := z.podName(qname); ok {
			e = &entry{a: []dns.RR{aRecord(qname, ip)}}
		}
	}
	if e == nil && qname == z.suffix[1:] && qtype == dns.TypeSOA {
		ans.Answer = []dns.RR{z.soa}
		return ans, true
	}
	if e == nil {
		ans.Ns = []dns.RR{z.soa}
		if z.parents[qname] == 0 && qname != z.suffix[1:] {
			ans.Rcode = dns.RcodeNameError
		}
		return ans, true
	}
	if e.cname != nil {
		ans.Answer = []dns.RR{e.cname}
		if qtype != dns.TypeCNAME {
			ans.CNAME = e.cname.(*dns.CNAME).Target
		}
		return ans, true
	}
	switch qtype {
	case dns.TypeA:
		ans.Answer = e.a
	case dns.TypeSRV:
		ans.Answer, ans.Extra = e.srv, e.extra
	case dns.TypePTR:
		ans.Answer = e.ptr
	case dns.TypeANY:
		ans.Answer = append(append(append([]dns.RR{}, e.a...), e.srv...), e.ptr...)
	}
	if len(ans.Answer) == 0 {
		ans.Ns = []dns.RR{z.soa}
	}
	return ans, true
}

// podName reads Kubernetes' pod A records, a-b-c-d.<ns>.pod.<domain>,
// which answer the address the name spells (as CoreDNS' "pods insecure").
func (z *Zone) podName(qname string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(qname, ".pod"+z.suffix)
	if !ok {
		return netip.Addr{}, false
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok || ns == "" || strings.Contains(ns, ".") {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
	return ip, err == nil && ip.Is4()
}
