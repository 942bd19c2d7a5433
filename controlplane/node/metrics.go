package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skiffhq/skiff/controlplane/pki"
)

// DefaultMetricsPort is where a control node serves /metrics over mutual
// TLS (docs/architecture.md, "Ports").
const DefaultMetricsPort = 7446

// DefaultWorkerMetricsPort is where a worker serves /metrics over mutual
// TLS (its serving certificate; the same permission as a control node's).
const DefaultWorkerMetricsPort = 7447

// MetricsPath is the path every daemon serves Prometheus metrics at.
const MetricsPath = "/metrics"

// ErrMetricsForbidden refuses a scrape by an identity without the metrics
// permission.
var ErrMetricsForbidden = errors.New("forbidden: reading metrics needs an admin or control-node certificate")

// NewMetricsRegistry is a registry with the Go runtime and process
// collectors, the base every daemon registers its parts' metrics on.
func NewMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MayReadMetrics is the metrics permission: the Kubernetes equivalent is
// the nonResourceURL /metrics, which cluster-admin holds and the view role
// does not. Admins and control nodes (each other's scrapers) hold it;
// viewers, whose role is to read objects, and workers do not.
func MayReadMetrics(id pki.Identity) error {
	switch id.Role {
	case pki.RoleAdmin, pki.RoleControl:
		return nil
	}
	return fmt.Errorf("%w (%s)", ErrMetricsForbidden, id)
}

// metricsHandler serves g; over TLS it first checks the client's identity.
func metricsHandler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}})
	mux := http.NewServeMux()
	mux.HandleFunc(MetricsPath, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			if len(r.TLS.PeerCertificates) == 0 {
				http.Error(w, "a client certificate is required", http.StatusUnauthorized)
				return
			}
			id, err := pki.IdentityFromCert(r.TLS.PeerCertificates[0])
			if err == nil {
				err = MayReadMetrics(id)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
	return mux
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("serving metrics", "err", fmt.Sprint(v...)) }

// ServeMetrics serves g's metrics at MetricsPath on lis until ctx ends; with
// tlsConfig set, over TLS to clients with the metrics permission
// (MayReadMetrics), else as plain HTTP (--metrics-addr: whoever reaches the
// address the operator chose may read).
func ServeMetrics(ctx context.Context, lis net.Listener, tlsConfig *tls.Config, g prometheus.Gatherer, log *slog.Logger) error {
	srv := &http.Server{Handler: metricsHandler(g, log), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if tlsConfig != nil {
		// One handshake per scrape: a certificate revoked (or of a member
		// removed) since the last one is refused at the next, not carried
		// on by a kept-alive connection.
		srv.SetKeepAlivesEnabled(false)
		lis = tls.NewListener(lis, tlsConfig)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", lis.Addr(), err)
	}
	return nil
}

// ListenAndServeMetrics is ServeMetrics on a plain HTTP listener at addr
// (--metrics-addr).
func ListenAndServeMetrics(ctx context.Context, addr string, g prometheus.Gatherer, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	log.Info("serving metrics over plain HTTP", "address", lis.Addr().String())
	return ServeMetrics(ctx, lis, nil, g, log)
}

// metricsTLS is the metrics port's TLS: a client certificate from the
// cluster's CAs is required and checked like the API port's (deny list,
// membership of control nodes); the permission is checked per request.
func (c *Control) metricsTLS() *tls.Config {
	t := pki.ServerTLSConfig(c.bundle.Pool(), c.renewer, tls.RequireAndVerifyClientCert)
	t.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: a client certificate is required")
		}
		return c.checkAPIClient(cs.PeerCertificates[0])
	}
	return c.bundle.ServerConfig(t)
}

// serveMetrics runs the control node's metrics port and, when set, the
// plain --metrics-addr. The default port is best effort (another daemon may
// hold it on a shared host: the node runs on and says so); a port the
// operator chose must open.
func (c *Control) serveMetrics(ctx context.Context) error {
	errs := make(chan error, 2)
	n := 0
	if port := c.cfg.MetricsPort; port >= 0 {
		explicit := port != 0
		if port == 0 {
			port = DefaultMetricsPort
		}
		addr := hostPort(c.state.BindAddress, port)
		lis, err := net.Listen("tcp", addr)
		switch {
		case err != nil && explicit:
			return fmt.Errorf("--metrics-port %d: %w", port, err)
		case err != nil:
			c.log.Warn("metrics port not served (pass --metrics-port to choose another, -1 for none)", "address", addr, "err", err)
		default:
			c.metricsAddr.Store(lis.Addr().String())
			n++
			go func() { errs <- ServeMetrics(ctx, lis, c.metricsTLS(), c.cfg.Gatherer, c.log) }()
		}
	}
	if c.cfg.MetricsAddr != "" {
		n++
		go func() { errs <- ListenAndServeMetrics(ctx, c.cfg.MetricsAddr, c.cfg.Gatherer, c.log) }()
	}
	var first error
	for ; n > 0; n-- {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// MetricsAddress is where the metrics port listens ("" until it does, or
// when it does not).
func (c *Control) MetricsAddress() string {
	s, _ := c.metricsAddr.Load().(string)
	return s
}

// fillMetrics gives a node without a registry of its own one with the Go
// runtime and process collectors.
func (c *Config) fillMetrics() {
	if c.Registerer == nil {
		reg := NewMetricsRegistry()
		c.Registerer, c.Gatherer = reg, reg
	}
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		} else {
			c.Gatherer = prometheus.NewRegistry() // registered elsewhere: nothing to serve
		}
	}
}
