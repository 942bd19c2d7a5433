package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"google.golang.org/grpc"

	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// controlDashboard is a control node's web dashboard (controlplane/
// dashboard): HTTPS on Config.DashboardPort with the node's serving
// certificate, the API reached in-process with the API port's
// interceptors and the audit log.
type controlDashboard struct {
	srv    *dashboard.Server
	inproc *dashboard.InProcess
	addr   string
	tls    *tls.Config
}

func (c *Control) newDashboard(cfg Config, aud *auditor) error {
	inproc, err := dashboard.NewInProcess(c.API, grpc.ChainUnaryInterceptor(aud.unary), grpc.ChainStreamInterceptor(aud.stream))
	if err != nil {
		return err
	}
	dc := dashboard.DefaultConfig()
	dc.API, dc.Cluster, dc.Logger = inproc.API, c.Store, c.log
	// The deny list and the CA set in force: a revoked user's sessions end.
	dc.CheckCert = c.checkAPIClient
	// Usage: the agents' NodeMetrics (dashusage.go; requests while no node
	// reports). Logs: the API server's own relay to the pod's node, called
	// as the session's user.
	dc.Usage = measuredUsage(inproc.API)
	dc.Logs = inproc
	if cfg.Dashboard != nil {
		cfg.Dashboard(&dc)
	}
	srv, err := dashboard.New(dc)
	if err != nil {
		inproc.Close()
		return err
	}
	// Client certificates are optional here (browsers have none); only the
	// login-token call needs one, and it is checked like the API port's.
	t := pki.ServerTLSConfig(c.bundle.Pool(), c.renewer, tls.VerifyClientCertIfGiven)
	t.NextProtos = []string{"h2", "http/1.1"}
	t.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return c.checkAPIClient(cs.PeerCertificates[0])
	}
	c.dash = &controlDashboard{srv: srv, inproc: inproc, addr: hostPort(c.state.BindAddress, cfg.DashboardPort), tls: c.bundle.ServerConfig(t)}
	return nil
}

// run serves the dashboard until ctx ends. A port already taken is logged
// and leaves the node without a dashboard rather than stopping it: the
// dashboard is a window onto the cluster, not part of it.
func (d *controlDashboard) run(ctx context.Context, c *Control) error {
	lis, err := net.Listen("tcp", d.addr)
	if err != nil {
		c.log.Warn("dashboard not served: its port is taken (ctl init/join --dashboard-port)", "addr", d.addr, "err", err)
		fmt.Fprintf(c.cfg.Out, "warning: dashboard not served on %s: %v\n", d.addr, err)
		return nil
	}
	errs := make(chan error, 1)
	go func() { errs <- d.inproc.Serve() }()
	err = d.srv.Serve(ctx, lis, d.tls)
	d.inproc.Close()
	if ierr := <-errs; err == nil {
		err = ierr
	}
	return err
}
