package ingress

import (
	"crypto/tls"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ClassName is the IngressClass this controller serves; Ingresses without
// a class are served too (it is the cluster's default class).
const ClassName = "skiff"

// DefaultClassAnnotation marks the cluster's default IngressClass.
const DefaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"

// Backend is one Service port's ready endpoints, picked round robin.
type Backend struct {
	// Name says which Service port this is ("ns/name:port"), for logs
	// and error pages.
	Name      string
	Endpoints []netip.AddrPort
	next      atomic.Uint32
}

// pick returns the endpoint to try for the attempt'th time of one request
// (attempt 0 advances the round robin, later attempts walk on from it).
func (b *Backend) pick(start uint32, attempt int) netip.AddrPort {
	return b.Endpoints[(start+uint32(attempt))%uint32(len(b.Endpoints))]
}

func (b *Backend) start() uint32 { return b.next.Add(1) - 1 }

// route is one path rule of a host.
type route struct {
	path    string // Prefix: without its trailing slash ("" for "/")
	backend *Backend
}

// hostRoutes are the path rules of one host, merged over Ingresses.
type hostRoutes struct {
	exact    map[string]*Backend
	prefixes []route // longest path first
}

// match returns the backend of the longest rule matching path (an Exact
// rule beats a Prefix of the same length, and an Exact match is as long
// as the path itself, so it is checked first).
func (h *hostRoutes) match(path string) *Backend {
	if h == nil {
		return nil
	}
	if b, ok := h.exact[path]; ok {
		return b
	}
	for _, r := range h.prefixes {
		if prefixMatch(r.path, path) {
			return r.backend
		}
	}
	return nil
}

// prefixMatch is Kubernetes' Prefix rule: element-wise on '/', so "/foo"
// matches "/foo", "/foo/" and "/foo/bar" but not "/foobar". p is the
// rule's path without its trailing slash.
func prefixMatch(p, path string) bool {
	if p == "" {
		return true
	}
	if !strings.HasPrefix(path, p) {
		return false
	}
	return len(path) == len(p) || path[len(p)] == '/'
}

// Table is an immutable routing table: the Proxy swaps whole tables.
type Table struct {
	hosts     map[string]*hostRoutes // exact host
	wildcards map[string]*hostRoutes // "*.example.com" keyed by ".example.com"
	anyHost   *hostRoutes            // rules without a host
	fallback  *Backend               // the oldest Ingress's defaultBackend
	certs     map[string]*tls.Certificate
	wildCerts map[string]*tls.Certificate // keyed by ".example.com"
	firstCert *tls.Certificate            // for a client without SNI
}

// Route returns the backend for a request's host (port and a trailing dot
// ignored, case-insensitive) and path, or nil when no rule and no default
// backend match.
func (t *Table) Route(host, path string) *Backend {
	host = normalizeHost(host)
	if b := t.hosts[host].match(path); b != nil {
		return b
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if b := t.wildcards[host[i:]].match(path); b != nil {
			return b
		}
	}
	if b := t.anyHost.match(path); b != nil {
		return b
	}
	return t.fallback
}

// Certificate returns the certificate for an SNI name: exact, then a
// one-label wildcard, then (no name or no match) the first one loaded.
func (t *Table) Certificate(name string) *tls.Certificate {
	name = normalizeHost(name)
	if c, ok := t.certs[name]; ok {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := t.wildCerts[name[i:]]; ok {
			return c
		}
	}
	return t.firstCert
}

// HasCertificates reports whether any Ingress's TLS Secret loaded.
func (t *Table) HasCertificates() bool { return t.firstCert != nil }

func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// Sources is what a table is built from. Services and Endpoints are looked
// up by "namespace/name"; Certs by the TLS Secret's "namespace/name" (a
// Secret missing there, or invalid, serves none of its hosts).
type Sources struct {
	Ingresses []*apiv1.Ingress
	Services  func(namespace, name string) *apiv1.Service
	Endpoints func(namespace, name string) *apiv1.Endpoints
	Certs     map[string]*tls.Certificate
}

// Ours reports whether this controller serves in: class skiff, or no
// class at all (skiff is the default class).
func Ours(in *apiv1.Ingress) bool {
	c := in.GetSpec().IngressClassName
	if c == nil || *c == "" {
		c2 := in.GetMetadata().GetAnnotations()["kubernetes.io/ingress.class"]
		return c2 == "" || c2 == ClassName
	}
	return *c == ClassName
}

// Build returns the table for src. Ingresses are taken oldest first, so a
// rule another Ingress already defines for the same host, path and type
// keeps the older one's backend (as Kubernetes' controllers do).
func Build(src Sources) *Table {
	ings := make([]*apiv1.Ingress, 0, len(src.Ingresses))
	for _, in := range src.Ingresses {
		if Ours(in) && in.GetMetadata().GetDeletionTimestamp() == "" {
			ings = append(ings, in)
		}
	}
	sort.SliceStable(ings, func(i, j int) bool {
		a, b := ings[i].GetMetadata(), ings[j].GetMetadata()
		if a.GetCreationTimestamp() != b.GetCreationTimestamp() {
			return a.GetCreationTimestamp() < b.GetCreationTimestamp()
		}
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	t := &Table{hosts: map[string]*hostRoutes{}, wildcards: map[string]*hostRoutes{},
		certs: map[string]*tls.Certificate{}, wildCerts: map[string]*tls.Certificate{}}
	backends := map[string]*Backend{}
	resolve := func(ns string, b *apiv1.IngressBackend) *Backend {
		svc := b.GetService()
		if svc == nil {
			return nil // resource backends are not served
		}
		key := ns + "/" + svc.GetName() + ":" + svc.GetPort().GetName()
		if n := svc.GetPort().GetNumber(); n != 0 {
			key = ns + "/" + svc.GetName() + ":" + strconv.Itoa(int(n))
		}
		if be, ok := backends[key]; ok {
			return be
		}
		be := &Backend{Name: key, Endpoints: endpointsOf(src, ns, svc)}
		backends[key] = be
		return be
	}
	prefixSeen := map[*hostRoutes]map[string]bool{}
	for _, in := range ings {
		ns := in.GetMetadata().GetNamespace()
		s := in.GetSpec()
		if t.fallback == nil && s.GetDefaultBackend() != nil {
			t.fallback = resolve(ns, s.GetDefaultBackend())
		}
		for _, r := range s.GetRules() {
			hr := t.routesFor(normalizeHost(r.GetHost()))
			if prefixSeen[hr] == nil {
				prefixSeen[hr] = map[string]bool{}
			}
			for _, p := range r.GetHttp().GetPaths() {
				be := resolve(ns, p.GetBackend())
				if be == nil {
					continue
				}
				path := p.GetPath()
				if path == "" {
					path = "/"
				}
				if p.GetPathType() == "Exact" {
					if _, ok := hr.exact[path]; !ok {
						hr.exact[path] = be
					}
					continue
				}
				path = strings.TrimRight(path, "/")
				if !prefixSeen[hr][path] {
					prefixSeen[hr][path] = true
					hr.prefixes = append(hr.prefixes, route{path: path, backend: be})
				}
			}
		}
		for _, tl := range s.GetTls() {
			cert := src.Certs[ns+"/"+tl.GetSecretName()]
			if cert == nil {
				continue
			}
			if t.firstCert == nil {
				t.firstCert = cert
			}
			for _, h := range tl.GetHosts() {
				h = normalizeHost(h)
				m, key := t.certs, h
				if strings.HasPrefix(h, "*.") {
					m, key = t.wildCerts, h[1:]
				}
				if _, ok := m[key]; !ok {
					m[key] = cert
				}
			}
		}
	}
	for _, hr := range t.all() {
		sort.SliceStable(hr.prefixes, func(i, j int) bool { return len(hr.prefixes[i].path) > len(hr.prefixes[j].path) })
	}
	return t
}

func (t *Table) routesFor(host string) *hostRoutes {
	m, key := t.hosts, host
	switch {
	case host == "":
		if t.anyHost == nil {
			t.anyHost = &hostRoutes{exact: map[string]*Backend{}}
		}
		return t.anyHost
	case strings.HasPrefix(host, "*."):
		m, key = t.wildcards, host[1:]
	}
	hr, ok := m[key]
	if !ok {
		hr = &hostRoutes{exact: map[string]*Backend{}}
		m[key] = hr
	}
	return hr
}

func (t *Table) all() []*hostRoutes {
	out := make([]*hostRoutes, 0, len(t.hosts)+len(t.wildcards)+1)
	for _, hr := range t.hosts {
		out = append(out, hr)
	}
	for _, hr := range t.wildcards {
		out = append(out, hr)
	}
	if t.anyHost != nil {
		out = append(out, t.anyHost)
	}
	return out
}

// endpointsOf resolves an Ingress's Service port to the ready endpoints'
// addresses: the Service port (by number or name) gives the port's name,
// which picks the Endpoints' port (the only one when unnamed).
func endpointsOf(src Sources, ns string, ref *apiv1.IngressServiceBackend) []netip.AddrPort {
	if src.Services == nil || src.Endpoints == nil {
		return nil
	}
	svc := src.Services(ns, ref.GetName())
	eps := src.Endpoints(ns, ref.GetName())
	if svc == nil || eps == nil {
		return nil
	}
	var sp *apiv1.ServicePort
	for _, p := range svc.GetSpec().GetPorts() {
		if (ref.GetPort().GetNumber() != 0 && p.GetPort() == ref.GetPort().GetNumber()) ||
			(ref.GetPort().GetName() != "" && p.GetName() == ref.GetPort().GetName()) {
			sp = p
			break
		}
	}
	if sp == nil || (sp.GetProtocol() != "" && sp.GetProtocol() != "TCP") {
		return nil
	}
	var out []netip.AddrPort
	for _, sub := range eps.GetSubsets() {
		var port int32
		for _, p := range sub.GetPorts() {
			if p.GetName() == sp.GetName() && (p.GetProtocol() == "" || p.GetProtocol() == "TCP") {
				port = p.GetPort()
				break
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, a := range sub.GetAddresses() {
			ip, err := netip.ParseAddr(a.GetIp())
			if err != nil {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
}
