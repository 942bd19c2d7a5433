package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// SecretRefresh is how often the feed re-reads TLS Secrets (a node may
// not watch Secrets, only get the ones Ingresses reference).
const SecretRefresh = 30 * time.Second

// Feed keeps a Proxy's table in line with the API.
type Feed struct {
	c         *client.Client
	proxy     *Proxy
	log       *slog.Logger
	ingresses *client.Informer
	services  *client.Informer
	endpoints *client.Informer
	dirty     chan struct{}
	// certs caches parsed Secrets by "namespace/name" and resourceVersion.
	certs map[string]cachedCert
	// built is signalled (non-blocking) after each table swap, for tests.
	built chan struct{}
}

type cachedCert struct {
	version string
	fetched time.Time
	cert    *tls.Certificate
}

// NewFeed returns a feed driving proxy from c; Run starts it.
func NewFeed(c *client.Client, proxy *Proxy, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	f := &Feed{c: c, proxy: proxy, log: log.With("component", "ingress"), dirty: make(chan struct{}, 1),
		certs: map[string]cachedCert{}, built: make(chan struct{}, 1)}
	h := client.EventHandler{
		OnAdd:    func(client.Object) { f.markDirty() },
		OnUpdate: func(_, o client.Object) { f.markDirty() },
		OnDelete: func(client.Object) { f.markDirty() },
	}
	f.ingresses = client.NewInformer(c, "Ingress", client.ListOptions{}, h)
	f.services = client.NewInformer(c, "Service", client.ListOptions{}, h)
	f.endpoints = client.NewInformer(c, "Endpoints", client.ListOptions{}, h)
	return f
}

func (f *Feed) markDirty() {
	select {
	case f.dirty <- struct{}{}:
	default:
	}
}

// Built is signalled after each table swap.
func (f *Feed) Built() <-chan struct{} { return f.built }

// Run watches until ctx ends, rebuilding the table after each change (a
// burst of changes costs one rebuild) and at least every SecretRefresh.
func (f *Feed) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, inf := range []*client.Informer{f.ingresses, f.services, f.endpoints} {
		g.Go(func() error { return ignoreCanceled(ctx, inf.Run(ctx)) })
	}
	g.Go(func() error {
		for _, inf := range []*client.Informer{f.ingresses, f.services, f.endpoints} {
			if err := inf.WaitForSync(ctx); err != nil {
				return nil
			}
		}
		tick := time.NewTicker(SecretRefresh)
		defer tick.Stop()
		for {
			f.rebuild(ctx)
			select {
			case <-ctx.Done():
				return nil
			case <-f.dirty:
			case <-tick.C:
			}
		}
	})
	return g.Wait()
}

func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (f *Feed) rebuild(ctx context.Context) {
	var ings []*apiv1.Ingress
	for _, o := range f.ingresses.List() {
		if in, ok := o.(*apiv1.Ingress); ok && Ours(in) {
			ings = append(ings, in)
		}
	}
	t := Build(Sources{
		Ingresses: ings,
		Services: func(ns, name string) *apiv1.Service {
			o, _ := f.services.Get(ns, name)
			s, _ := o.(*apiv1.Service)
			return s
		},
		Endpoints: func(ns, name string) *apiv1.Endpoints {
			o, _ := f.endpoints.Get(ns, name)
			e, _ := o.(*apiv1.Endpoints)
			return e
		},
		Certs: f.loadCerts(ctx, ings),
	})
	f.proxy.SetTable(t)
	select {
	case f.built <- struct{}{}:
	default:
	}
}

// loadCerts gets the TLS Secrets the Ingresses reference. A Secret that
// cannot be read or parsed is logged and skips its hosts; the others
// still serve.
func (f *Feed) loadCerts(ctx context.Context, ings []*apiv1.Ingress) map[string]*tls.Certificate {
	out := map[string]*tls.Certificate{}
	keep := map[string]bool{}
	for _, in := range ings {
		ns := in.GetMetadata().GetNamespace()
		for _, tl := range in.GetSpec().GetTls() {
			name := tl.GetSecretName()
			key := ns + "/" + name
			if name == "" || keep[key] {
				continue
			}
			keep[key] = true
			cert, err := f.certFor(ctx, ns, name)
			if err != nil {
				f.log.Warn("ingress TLS secret not served", "ingress", ns+"/"+in.GetMetadata().GetName(), "secret", key, "err", err)
				continue
			}
			out[key] = cert
		}
	}
	for k := range f.certs {
		if !keep[k] {
			delete(f.certs, k)
		}
	}
	return out
}

func (f *Feed) certFor(ctx context.Context, ns, name string) (*tls.Certificate, error) {
	key := ns + "/" + name
	// Endpoints change often; Secrets are re-read only every SecretRefresh.
	if c, ok := f.certs[key]; ok && time.Since(c.fetched) < SecretRefresh {
		return c.cert, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := client.Get[*apiv1.Secret](ctx, f.c, ns, name)
	if err != nil {
		return nil, fmt.Errorf("get secret: %w", err)
	}
	if c, ok := f.certs[key]; ok && c.version == s.GetMetadata().GetResourceVersion() {
		c.fetched = time.Now()
		f.certs[key] = c
		return c.cert, nil
	}
	cert, err := ParseTLSSecret(s)
	if err != nil {
		return nil, err
	}
	f.certs[key] = cachedCert{version: s.GetMetadata().GetResourceVersion(), fetched: time.Now(), cert: cert}
	return cert, nil
}

// ParseTLSSecret reads a kubernetes.io/tls Secret's tls.crt and tls.key.
func ParseTLSSecret(s *apiv1.Secret) (*tls.Certificate, error) {
	crt, key := s.GetData()["tls.crt"], s.GetData()["tls.key"]
	if len(crt) == 0 || len(key) == 0 {
		return nil, fmt.Errorf("secret %s/%s: data tls.crt and tls.key are required", s.GetMetadata().GetNamespace(), s.GetMetadata().GetName())
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: tls.crt/tls.key: %w", s.GetMetadata().GetNamespace(), s.GetMetadata().GetName(), err)
	}
	return &cert, nil
}
