package apiservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
	"google.golang.org/protobuf/proto"
)

// The Service's identity, as in Kubernetes.
const (
	Namespace = "default"
	Name      = "kubernetes"
	PortName  = "https"
	Port      = 443
)

// DefaultServiceCIDR is the Service range the ClusterIP is taken from
// when the config names none (serviceip's default).
const DefaultServiceCIDR = "10.96.0.0/12"

// Config of the loop.
type Config struct {
	// ServiceCIDR is the Service range; the Service's ClusterIP is its
	// first usable address.
	ServiceCIDR string
	// APIServers lists the current control nodes' API addresses
	// (host:port). Nil: the loop keeps the Service only (a test control
	// plane without registered control nodes); a control node always
	// sets it.
	APIServers func(context.Context) ([]string, error)
	// Period between checks.
	Period time.Duration
	Logger *slog.Logger
}

// DefaultConfig: the default Service range, checked every 10 s.
func DefaultConfig() Config {
	return Config{ServiceCIDR: DefaultServiceCIDR, Period: 10 * time.Second}
}

// FirstAddress is the first usable address of cidr (10.96.0.1 for
// 10.96.0.0/12): the kubernetes Service's ClusterIP.
func FirstAddress(cidr string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service CIDR %q: %w", cidr, err)
	}
	a := p.Masked().Addr().Next()
	if !a.IsValid() || !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("service CIDR %q has no usable address", cidr)
	}
	return a, nil
}

// Loop keeps the Service and its Endpoints.
type Loop struct {
	cfg Config
	ip  netip.Addr
	c   *client.Client
	log *slog.Logger
}

// New checks cfg and returns the loop.
func New(c *client.Client, cfg Config) (*Loop, error) {
	def := DefaultConfig()
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = def.ServiceCIDR
	}
	if cfg.Period <= 0 {
		cfg.Period = def.Period
	}
	ip, err := FirstAddress(cfg.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("%w: apiservice: %w", controllers.ErrConfig, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Loop{cfg: cfg, ip: ip, c: c, log: log.With("controller", "apiservice")}, nil
}

// NewLoop builds the loop from its registered config ("apiservice").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "apiservice", DefaultConfig())
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	return New(d.Client, cfg)
}

// Name implements controlplane.Loop.
func (l *Loop) Name() string { return "apiservice" }

// Run ensures the Service and Endpoints until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	return controllers.EnsureEvery(ctx, l.cfg.Period, l.log, "kubernetes Service", l.Ensure)
}

// ClusterIP is the Service's address.
func (l *Loop) ClusterIP() netip.Addr { return l.ip }

// WantService is the Service as it should be.
func (l *Loop) WantService() *apiv1.Service {
	ip := l.ip.String()
	return &apiv1.Service{ApiVersion: "v1", Kind: "Service",
		Metadata: &apiv1.ObjectMeta{Namespace: Namespace, Name: Name,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: &apiv1.ServiceSpec{Type: "ClusterIP", ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []*apiv1.ServicePort{{Name: PortName, Protocol: "TCP", Port: Port, TargetPort: PortName}}}}
}

// WantEndpoints is the Endpoints for the API addresses (host:port): one
// subset per port, addresses sorted. An address that is not IP:port is
// an error naming it (a control node registered with a host name cannot
// be a Service endpoint).
func WantEndpoints(servers []string) (*apiv1.Endpoints, error) {
	byPort := map[int][]string{}
	for _, s := range servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("control node API address %q: %w", s, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return nil, fmt.Errorf("control node API address %q: not an IP address", s)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("control node API address %q: bad port", s)
		}
		if !slices.Contains(byPort[p], ip.String()) {
			byPort[p] = append(byPort[p], ip.String())
		}
	}
	ports := make([]int, 0, len(byPort))
	for p := range byPort {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	ep := &apiv1.Endpoints{ApiVersion: "v1", Kind: "Endpoints", Metadata: &apiv1.ObjectMeta{Namespace: Namespace, Name: Name}}
	for _, p := range ports {
		ips := byPort[p]
		sort.Strings(ips)
		sub := &apiv1.EndpointSubset{Ports: []*apiv1.EndpointPort{{Name: PortName, Port: int32(p), Protocol: "TCP"}}}
		for _, ip := range ips {
			sub.Addresses = append(sub.Addresses, &apiv1.EndpointAddress{Ip: ip})
		}
		ep.Subsets = append(ep.Subsets, sub)
	}
	return ep, nil
}

// Ensure makes the Service and Endpoints what they should be.
func (l *Loop) Ensure(ctx context.Context) error {
	if err := l.ensureService(ctx); err != nil {
		return err
	}
	if l.cfg.APIServers == nil {
		return nil
	}
	servers, err := l.cfg.APIServers(ctx)
	if err != nil {
		return fmt.Errorf("control nodes' API addresses: %w", err)
	}
	if len(servers) == 0 {
		// Never the case on a live leader (it is a control node itself):
		// an empty read is kept from emptying the Endpoints.
		return errors.New("no control node API address is registered yet")
	}
	want, err := WantEndpoints(servers)
	if err != nil {
		return err
	}
	cur, err := client.Get[*apiv1.Endpoints](ctx, l.c, Namespace, Name)
	if client.IsNotFound(err) {
		if _, err := client.Create(ctx, l.c, want); err != nil && !client.IsAlreadyExists(err) {
			return fmt.Errorf("create endpoints %s/%s: %w", Namespace, Name, err)
		}
		l.log.Info("kubernetes Service endpoints set", "servers", servers)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read endpoints %s/%s: %w", Namespace, Name, err)
	}
	if proto.Equal(&apiv1.Endpoints{Subsets: cur.GetSubsets()}, &apiv1.Endpoints{Subsets: want.GetSubsets()}) {
		return nil
	}
	next := codec.Clone(cur)
	next.Subsets = want.Subsets
	if _, err := client.Update(ctx, l.c, next); err != nil {
		return fmt.Errorf("update endpoints %s/%s: %w", Namespace, Name, err)
	}
	l.log.Info("kubernetes Service endpoints updated", "servers", servers)
	return nil
}

func (l *Loop) ensureService(ctx context.Context) error {
	want := l.WantService()
	cur, err := client.Get[*apiv1.Service](ctx, l.c, Namespace, Name)
	if client.IsNotFound(err) {
		if _, err := client.Create(ctx, l.c, want); err != nil && !client.IsAlreadyExists(err) {
			return fmt.Errorf("create %s/%s: %w", Namespace, Name, err)
		}
		l.log.Info("kubernetes Service created", "address", l.ip)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", Namespace, Name, err)
	}
	if cur.GetSpec().GetClusterIP() != want.Spec.ClusterIP {
		// A ClusterIP cannot change in place.
		l.log.Warn("kubernetes Service has another address than the first of the Service range", "address", cur.GetSpec().GetClusterIP(), "want", want.Spec.ClusterIP)
	}
	if len(cur.GetSpec().GetSelector()) == 0 && proto.Equal(&apiv1.ServiceSpec{Ports: cur.GetSpec().GetPorts()}, &apiv1.ServiceSpec{Ports: want.Spec.Ports}) {
		return nil
	}
	next := codec.Clone(cur)
	next.Spec.Ports, next.Spec.Selector = want.Spec.Ports, nil
	if _, err := client.Update(ctx, l.c, next); err != nil {
		return fmt.Errorf("update %s/%s: %w", Namespace, Name, err)
	}
	return nil
}
