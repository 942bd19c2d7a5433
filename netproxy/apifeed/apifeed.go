package apifeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/clusterdns"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Proxy is the part of netproxy.Proxy the feed drives.
type Proxy interface {
	SetService(netproxy.Service) error
	DeleteService(netproxy.ServiceKey)
	SetEndpoints(netproxy.Endpoints) error
	DeleteEndpoints(netproxy.ServiceKey)
	Run(ctx context.Context) error
}

// DefaultAffinityTimeout is Kubernetes' sessionAffinityConfig default (3 h).
const DefaultAffinityTimeout = 10800 * time.Second

// Feed keeps a Proxy in line with the API's Services and Endpoints.
type Feed struct {
	proxy    Proxy
	log      *slog.Logger
	services *client.Informer
	eps      *client.Informer

	mu sync.Mutex // serializes recomputation per key
	// programmed: keys the proxy currently has a Service for.
	programmed map[netproxy.ServiceKey]bool
}

// New returns a feed for proxy; Run starts it (and the proxy).
func New(c *client.Client, proxy Proxy, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	f := &Feed{proxy: proxy, log: log.With("component", "apifeed"), programmed: map[netproxy.ServiceKey]bool{}}
	h := client.EventHandler{
		OnAdd:    func(o client.Object) { f.update(keyOf(o)) },
		OnUpdate: func(_, o client.Object) { f.update(keyOf(o)) },
		OnDelete: func(o client.Object) { f.update(keyOf(o)) },
	}
	f.services = client.NewInformer(c, "Service", client.ListOptions{}, h)
	f.eps = client.NewInformer(c, "Endpoints", client.ListOptions{}, h)
	return f
}

func keyOf(o client.Object) netproxy.ServiceKey {
	return netproxy.ServiceKey{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName()}
}

// Run watches and runs the proxy until ctx ends. The proxy's first (full)
// sync waits for both informers' first lists, so a restart never programs
// a partial view (which would drop live services for a moment).
func (f *Feed) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ignoreCanceled(ctx, f.services.Run(ctx)) })
	g.Go(func() error { return ignoreCanceled(ctx, f.eps.Run(ctx)) })
	g.Go(func() error {
		if err := f.services.WaitForSync(ctx); err != nil {
			return nil
		}
		if err := f.eps.WaitForSync(ctx); err != nil {
			return nil
		}
		return f.proxy.Run(ctx)
	})
	return g.Wait()
}

func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// update recomputes one key from both caches and hands it to the proxy.
func (f *Feed) update(k netproxy.ServiceKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var svc *apiv1.Service
	if o, ok := f.services.Get(k.Namespace, k.Name); ok {
		svc, _ = o.(*apiv1.Service)
	}
	var eps *apiv1.Endpoints
	if o, ok := f.eps.Get(k.Namespace, k.Name); ok {
		eps, _ = o.(*apiv1.Endpoints)
	}
	ps, pe, err := Convert(svc, eps)
	if err != nil {
		f.log.Warn("service not programmed", "service", k.String(), "err", err)
	}
	if ps == nil {
		if f.programmed[k] {
			f.proxy.DeleteService(k)
			f.proxy.DeleteEndpoints(k)
			delete(f.programmed, k)
		}
		return
	}
	if err := f.proxy.SetService(*ps); err != nil {
		f.log.Warn("service rejected by the proxy", "service", k.String(), "err", err)
		return
	}
	f.programmed[k] = true
	if pe == nil {
		f.proxy.DeleteEndpoints(k)
		return
	}
	if err := f.proxy.SetEndpoints(*pe); err != nil {
		f.log.Warn("endpoints rejected by the proxy", "service", k.String(), "err", err)
	}
}

// Convert turns a Service and its Endpoints (either may be nil) into the
// proxy's types. A nil Service result means "nothing to program": no
// Service, a headless one (clusterIP None), an ExternalName, or no IPv4
// ClusterIP, or the cluster DNS Service (every node answers its address
// itself: netproxy/clusterdns). err explains a Service that is skipped or
// only partly used.
func Convert(svc *apiv1.Service, eps *apiv1.Endpoints) (*netproxy.Service, *netproxy.Endpoints, error) {
	if svc == nil {
		return nil, nil, nil
	}
	sp := svc.GetSpec()
	key := keyOf(svc)
	if key.Namespace == clusterdns.ServiceNamespace && key.Name == clusterdns.ServiceName {
		return nil, nil, nil
	}
	if sp.GetType() == "ExternalName" || sp.GetClusterIP() == "None" {
		return nil, nil, nil
	}
	out := &netproxy.Service{ServiceKey: key}
	var problems []string
	ips := sp.GetClusterIPs()
	if len(ips) == 0 && sp.GetClusterIP() != "" {
		ips = []string{sp.GetClusterIP()}
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() {
			problems = append(problems, fmt.Sprintf("clusterIP %q skipped: only IPv4 is supported", s))
			continue
		}
		out.ClusterIPs = append(out.ClusterIPs, ip)
	}
	if len(out.ClusterIPs) == 0 {
		problems = append(problems, "no IPv4 clusterIP (not allocated yet?)")
		return nil, nil, joinProblems(key, problems)
	}
	if sp.GetSessionAffinity() == "ClientIP" {
		out.AffinityTimeout = DefaultAffinityTimeout
		if t := sp.GetSessionAffinityConfig().GetClientIP().TimeoutSeconds; t != nil && *t > 0 {
			out.AffinityTimeout = time.Duration(*t) * time.Second
		}
	}
	nodePorts := sp.GetType() == "NodePort" || sp.GetType() == "LoadBalancer"
	for i, p := range sp.GetPorts() {
		proto := netproxy.Protocol(strings.ToUpper(p.GetProtocol()))
		if proto == "" {
			proto = netproxy.TCP
		}
		if proto != netproxy.TCP && proto != netproxy.UDP {
			problems = append(problems, fmt.Sprintf("ports[%d] protocol %s skipped: only TCP and UDP are supported", i, p.GetProtocol()))
			continue
		}
		target, err := targetPort(p, proto, eps)
		if err != nil {
			problems = append(problems, fmt.Sprintf("ports[%d]: %v", i, err))
		}
		port := netproxy.ServicePort{Name: p.GetName(), Protocol: proto, Port: uint16(p.GetPort()), TargetPort: target}
		if nodePorts {
			port.NodePort = uint16(p.GetNodePort())
		}
		out.Ports = append(out.Ports, port)
	}
	if eps == nil {
		return out, nil, joinProblems(key, problems)
	}
	pe := &netproxy.Endpoints{ServiceKey: key}
	seen := map[netip.Addr]int{}
	add := func(addrs []*apiv1.EndpointAddress, ready bool) {
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a.GetIp())
			if err != nil || !ip.Is4() {
				problems = append(problems, fmt.Sprintf("endpoint %q skipped: only IPv4 is supported", a.GetIp()))
				continue
			}
			if i, ok := seen[ip]; ok {
				pe.Endpoints[i].Ready = pe.Endpoints[i].Ready || ready
				continue
			}
			seen[ip] = len(pe.Endpoints)
			pe.Endpoints = append(pe.Endpoints, netproxy.Endpoint{IP: ip, Ready: ready})
		}
	}
	for _, ss := range eps.GetSubsets() {
		add(ss.GetAddresses(), true)
		add(ss.GetNotReadyAddresses(), false)
	}
	return out, pe, joinProblems(key, problems)
}

func joinProblems(k netproxy.ServiceKey, p []string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("service %s: %s", k, strings.Join(p, "; "))
}

// targetPort is the port on the endpoints: the Endpoints' port of the same
// name (the endpoints controller resolved named targetPorts there), else
// a numeric targetPort, else the service port. The proxy has one target
// port per service port, so endpoints whose pods name the port with
// different numbers all get the first subset's.
func targetPort(p *apiv1.ServicePort, proto netproxy.Protocol, eps *apiv1.Endpoints) (uint16, error) {
	for _, ss := range eps.GetSubsets() {
		for _, ep := range ss.GetPorts() {
			epProto := strings.ToUpper(ep.GetProtocol())
			if epProto == "" {
				epProto = "TCP"
			}
			if ep.GetName() == p.GetName() && netproxy.Protocol(epProto) == proto && ep.GetPort() > 0 && ep.GetPort() < 65536 {
				return uint16(ep.GetPort()), nil
			}
		}
	}
	tp := p.GetTargetPort()
	if tp == "" {
		return uint16(p.GetPort()), nil
	}
	if n, err := strconv.Atoi(tp); err == nil && n > 0 && n < 65536 {
		return uint16(n), nil
	}
	// A named port without endpoints: nothing to forward to yet; the
	// service port keeps the Service valid until endpoints arrive.
	if len(eps.GetSubsets()) > 0 {
		return uint16(p.GetPort()), fmt.Errorf("targetPort %q: no endpoints port named %q", tp, p.GetName())
	}
	return uint16(p.GetPort()), nil
}
