package ingress

import (
	"context"
	"log/slog"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/skiffhq/skiff/proto/client"
)

// Config of a node's ingress controller.
type Config struct {
	// HTTPPort and HTTPSPort are the node ports served on every address;
	// 0 turns one off. HTTPAddr/HTTPSAddr, when set, override them (tests
	// bind 127.0.0.1:0).
	HTTPPort, HTTPSPort int
	HTTPAddr, HTTPSAddr string
	// H2C also serves cleartext HTTP/2 on the HTTP port.
	H2C    bool
	Logger *slog.Logger
}

// DefaultConfig is a worker's: HTTP on 80, HTTPS on 443, h2c on.
func DefaultConfig() Config { return Config{HTTPPort: 80, HTTPSPort: 443, H2C: true} }

// Controller is a node's ingress controller: the feed and the listeners.
type Controller struct {
	Proxy  *Proxy
	Feed   *Feed
	Server *Server
}

// New opens the listeners (a port in use fails here) and prepares the
// feed; Run serves.
func New(c *client.Client, cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sc := ServerConfig{HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr, H2C: cfg.H2C, Logger: cfg.Logger}
	if sc.HTTPAddr == "" && cfg.HTTPPort != 0 {
		sc.HTTPAddr = ":" + strconv.Itoa(cfg.HTTPPort)
	}
	if sc.HTTPSAddr == "" && cfg.HTTPSPort != 0 {
		sc.HTTPSAddr = ":" + strconv.Itoa(cfg.HTTPSPort)
	}
	p := NewProxy(cfg.Logger)
	s, err := Listen(sc, p)
	if err != nil {
		return nil, err
	}
	return &Controller{Proxy: p, Feed: NewFeed(c, p, cfg.Logger), Server: s}, nil
}

// Run serves until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Feed.Run(ctx) })
	g.Go(func() error { return c.Server.Serve(ctx) })
	return g.Wait()
}
