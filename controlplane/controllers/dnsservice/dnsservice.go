package dnsservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// The Service's identity and the annotation nodes read the domain from
// (netproxy/clusterdns reads the same names: the two sides meet only
// through the API).
const (
	Namespace               = "kube-system"
	Name                    = "kube-dns"
	AnnotationClusterDomain = "skiff.dev/cluster-domain"
)

// Config of the loop.
type Config struct {
	// Address is the cluster DNS Service's ClusterIP (inside the Service
	// range).
	Address string
	// Network reads the cluster network settings (the domain); nil means
	// clusternet's defaults.
	Network func(context.Context) (clusternet.Network, error)
	// Period between checks.
	Period time.Duration
	Logger *slog.Logger
}

// DefaultConfig: 10.96.0.10 (kubeadm's choice in the default Service
// range), checked every 30 s.
func DefaultConfig() Config {
	return Config{Address: kinds.ClusterDNSIP, Period: 30 * time.Second}
}

// Loop keeps the Service.
type Loop struct {
	cfg Config
	c   *client.Client
	log *slog.Logger
}

// NewLoop builds the loop from its registered config ("dnsservice").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "dnsservice", DefaultConfig())
	if err != nil {
		return nil, err
	}
	if cfg.Address == "" {
		cfg.Address = DefaultConfig().Address
	}
	if cfg.Period <= 0 {
		cfg.Period = DefaultConfig().Period
	}
	log := cfg.Logger
	if log == nil {
		log = d.Logger
	}
	if log == nil {
		log = slog.Default()
	}
	return &Loop{cfg: cfg, c: d.Client, log: log.With("controller", "dnsservice")}, nil
}

// Name implements controlplane.Loop.
func (l *Loop) Name() string { return "dnsservice" }

// Run ensures the Service until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	return controllers.EnsureEvery(ctx, l.cfg.Period, l.log, "cluster DNS Service", l.Ensure)
}

// Want is the Service for domain.
func (l *Loop) Want(domain string) *apiv1.Service {
	return &apiv1.Service{
		Metadata: &apiv1.ObjectMeta{Namespace: Namespace, Name: Name,
			Labels:      map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
			Annotations: map[string]string{AnnotationClusterDomain: domain}},
		Spec: &apiv1.ServiceSpec{Type: "ClusterIP", ClusterIP: l.cfg.Address, ClusterIPs: []string{l.cfg.Address},
			Ports: []*apiv1.ServicePort{
				{Name: "dns", Protocol: "UDP", Port: 53, TargetPort: "53"},
				{Name: "dns-tcp", Protocol: "TCP", Port: 53, TargetPort: "53"},
			}},
	}
}

// Ensure creates the Service, or puts back its domain and ports.
func (l *Loop) Ensure(ctx context.Context) error {
	domain := clusternet.DefaultClusterDomain
	if l.cfg.Network != nil {
		n, err := l.cfg.Network(ctx)
		if err != nil {
			return fmt.Errorf("cluster network settings: %w", err)
		}
		domain = n.Domain
	}
	want := l.Want(domain)
	cur, err := client.Get[*apiv1.Service](ctx, l.c, Namespace, Name)
	if client.IsNotFound(err) {
		if _, err := client.Create(ctx, l.c, want); err != nil && !client.IsAlreadyExists(err) {
			return fmt.Errorf("create %s/%s: %w", Namespace, Name, err)
		}
		l.log.Info("cluster DNS Service created", "address", l.cfg.Address, "domain", domain)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", Namespace, Name, err)
	}
	if cur.GetSpec().GetClusterIP() != l.cfg.Address {
		// A ClusterIP cannot change in place; an admin who moved it on
		// purpose keeps it (nodes follow the Service's address).
		l.log.Warn("cluster DNS Service has another address than configured", "address", cur.GetSpec().GetClusterIP(), "configured", l.cfg.Address)
	}
	if cur.GetMetadata().GetAnnotations()[AnnotationClusterDomain] == domain && len(cur.GetSpec().GetPorts()) == 2 {
		return nil
	}
	next := codec.Clone(cur)
	if next.Metadata.Annotations == nil {
		next.Metadata.Annotations = map[string]string{}
	}
	next.Metadata.Annotations[AnnotationClusterDomain] = domain
	next.Spec.Ports = want.Spec.Ports
	if _, err := client.Update(ctx, l.c, next); err != nil {
		if client.IsConflict(err) {
			return errors.Join(errConflict, err)
		}
		return fmt.Errorf("update %s/%s: %w", Namespace, Name, err)
	}
	return nil
}

var errConflict = errors.New("the Service changed meanwhile (retried)")
