package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/netproxy/ingress"
	"github.com/skiffhq/skiff/proto/client"
)

func addIngressFlags(fl *pflag.FlagSet, f *agentFlags) {
	d := ingress.DefaultConfig()
	f.ingressFlags = fl
	fl.IntVar(&f.ingressHTTP, "ingress-http", d.HTTPPort, "port of the built-in ingress controller's HTTP (and h2c) listener on every address; anyone who reaches the node may connect (0: off)")
	fl.IntVar(&f.ingressHTTPS, "ingress-https", d.HTTPSPort, "port of the built-in ingress controller's HTTPS listener (certificates from the Ingresses' TLS Secrets); anyone who reaches the node may connect (0: off)")
}

// withIngress adds the node's ingress controller beside the Service proxy
// (either may be absent).
func withIngress(f agentFlags, c *client.Client, log *slog.Logger, proxy agent.ServiceProxy) (agent.ServiceProxy, error) {
	if f.ingressHTTP == 0 && f.ingressHTTPS == 0 {
		return proxy, nil
	}
	for _, p := range []struct {
		flag string
		v    int
	}{{"--ingress-http", f.ingressHTTP}, {"--ingress-https", f.ingressHTTPS}} {
		if p.v < 0 || p.v > 65535 {
			return nil, fmt.Errorf("%s %d: want a port number 1-65535, or 0 for off", p.flag, p.v)
		}
	}
	// A default port another program holds (a web server already on the
	// host, another agent) leaves that listener off with a warning, as the
	// metrics and dashboard ports do; a port the operator chose must open.
	for _, p := range []struct {
		flag string
		v    *int
	}{{"ingress-http", &f.ingressHTTP}, {"ingress-https", &f.ingressHTTPS}} {
		if *p.v == 0 || (f.ingressFlags != nil && f.ingressFlags.Changed(p.flag)) {
			continue
		}
		if err := portFree(*p.v); err != nil {
			log.Warn("ingress port not served (pass --"+p.flag+" to choose another, 0 for none)", "port", *p.v, "err", err)
			*p.v = 0
		}
	}
	if f.ingressHTTP == 0 && f.ingressHTTPS == 0 {
		return proxy, nil
	}
	cfg := ingress.DefaultConfig()
	cfg.HTTPPort, cfg.HTTPSPort, cfg.Logger = f.ingressHTTP, f.ingressHTTPS, log
	ctrl, err := ingress.New(c, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (--ingress-http/--ingress-https choose the ports, 0 turns one off)", err)
	}
	return runners{proxy, ctrl}, nil
}

// runners run side by side; the first error stops them all.
type runners []agent.ServiceProxy

func (rs runners) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range rs {
		if r != nil {
			g.Go(func() error { return r.Run(ctx) })
		}
	}
	return g.Wait()
}

// portFree tells whether a TCP port can be bound on every address now.
func portFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	return l.Close()
}
