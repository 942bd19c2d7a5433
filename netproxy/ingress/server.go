package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// ErrNoCertificate means a TLS client asked for a name no Ingress has a
// certificate for, and no certificate is loaded at all.
var ErrNoCertificate = errors.New("ingress: no TLS certificate loaded")

// ServerConfig says where the proxy listens.
type ServerConfig struct {
	// HTTPAddr and HTTPSAddr are host:port to listen on; empty turns the
	// listener off.
	HTTPAddr, HTTPSAddr string
	// H2C serves cleartext HTTP/2 (prior knowledge or Upgrade) on HTTP.
	H2C    bool
	Logger *slog.Logger
}

// Server runs the proxy's listeners.
type Server struct {
	cfg   ServerConfig
	proxy *Proxy
	log   *slog.Logger
	http  net.Listener
	https net.Listener
	fast  *fastServer // the HTTP port's fast path
}

// Listen opens the configured ports (so a busy port fails at start, with
// its address in the error); Serve then serves them.
func Listen(cfg ServerConfig, proxy *Proxy) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, proxy: proxy, log: cfg.Logger.With("component", "ingress")}
	var err error
	if cfg.HTTPAddr != "" {
		if s.http, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("ingress HTTP listener: %w", err)
		}
		s.fast = newFastServer(proxy, newHandoffListener(s.http.Addr()), s.log)
	}
	if cfg.HTTPSAddr != "" {
		if s.https, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
			if s.http != nil {
				_ = s.http.Close()
			}
			return nil, fmt.Errorf("ingress HTTPS listener: %w", err)
		}
	}
	return s, nil
}

// HTTPAddr is the bound HTTP address (nil when off).
func (s *Server) HTTPAddr() net.Addr {
	if s.http == nil {
		return nil
	}
	return s.http.Addr()
}

// HTTPSAddr is the bound HTTPS address (nil when off).
func (s *Server) HTTPSAddr() net.Addr {
	if s.https == nil {
		return nil
	}
	return s.https.Addr()
}

// Serve serves until ctx ends, then shuts down gracefully (open requests
// get a few seconds to finish).
func (s *Server) Serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	var servers []*http.Server
	fast := s.fast
	if s.http != nil {
		// Connections start on the fast path (fast.go); what it does not
		// serve goes to this standard server through the handoff listener.
		srv := s.newServer()
		if s.cfg.H2C {
			srv.Protocols = new(http.Protocols)
			srv.Protocols.SetHTTP1(true)
			srv.Protocols.SetUnencryptedHTTP2(true)
		}
		servers = append(servers, srv)
		g.Go(func() error { return served(srv.Serve(fast.handoff)) })
		g.Go(func() error { return fast.serve(s.http) })
		s.log.Info("ingress serving HTTP", "addr", s.http.Addr().String())
	}
	if s.https != nil {
		srv := s.newServer()
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := s.proxy.Table().Certificate(hello.ServerName); c != nil {
					return c, nil
				}
				return nil, fmt.Errorf("%w (SNI %q)", ErrNoCertificate, hello.ServerName)
			},
		}
		servers = append(servers, srv)
		g.Go(func() error { return served(srv.ServeTLS(s.https, "", "")) })
		s.log.Info("ingress serving HTTPS", "addr", s.https.Addr().String())
	}
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		if fast != nil {
			errs = append(errs, fast.shutdown(sctx, s.http))
		}
		for _, srv := range servers {
			if err := srv.Shutdown(sctx); err != nil {
				errs = append(errs, err, srv.Close())
			}
		}
		s.proxy.Close()
		return errors.Join(errs...)
	})
	return g.Wait()
}

func (s *Server) newServer() *http.Server {
	return &http.Server{
		Handler:           s.proxy,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

func served(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
