package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// WorkerEnv is what a worker's in-process services (the agent) are given
// once the node is registered.
type WorkerEnv struct {
	// Name is the node's name, the one its certificate is for (node:<Name>).
	Name string
	// DataDir is the node's data dir; a service keeps its state under it.
	DataDir string
	// Advertise is the host (IP or name) other machines reach the node at.
	Advertise string
	// Client reaches the control nodes with the certificate the renewer
	// keeps current and the CAs the worker trusts now: a renewal or a CA
	// rotation needs no restart of what uses it.
	Client *client.Client
	// ClusterCIDR tells the cluster's pod range as the control nodes
	// announce it in gossip ("" while none is known); nil without gossip.
	ClusterCIDR func(context.Context) (string, error)
	Logger      *slog.Logger
	// Registerer takes the services' metrics, served with the node's
	// (--metrics-addr).
	Registerer prometheus.Registerer
	// StreamTLS is the TLS of the agent's stream port (7445): the
	// renewer's certificate (serving the node's own address) and only
	// control nodes' client certificates accepted.
	StreamTLS *tls.Config
	// MetricsTLS is the TLS of the worker's metrics port (7447): the same
	// serving certificate, any cluster client certificate at the handshake,
	// the metrics permission checked per request.
	MetricsTLS *tls.Config
}

// WorkerFunc runs a worker's in-process services until ctx ends.
type WorkerFunc func(ctx context.Context, env WorkerEnv) error

// runWorker holds a worker's certificate (renewing it through the join
// service), keeps its Node object registered and runs cfg.Worker (the
// agent) in the same process.
func runWorker(ctx context.Context, cfg Config, st State) error {
	log := cfg.Logger.With("node", st.Name)
	dir := filepath.Join(cfg.DataDir, PKIDir)
	// The CAs this worker trusts: ca.crt, replaced by the list each
	// renewal answers with (a CA rotation adds a CA, then drops the old).
	bundle, err := pki.LoadBundle(dir)
	if err != nil {
		return err
	}
	kp, err := pki.LoadKeyPair(dir, workerKeyPair)
	if err != nil {
		return fmt.Errorf("worker key pair in %s: %w", dir, err)
	}
	cert, err := kp.TLS()
	if err != nil {
		return err
	}
	if len(st.Servers) == 0 {
		return fmt.Errorf("%s lists no control node API addresses (servers)", filepath.Join(cfg.DataDir, StateFile))
	}
	members := &memberView{}
	servers := newControlServers(cfg.DataDir, st, members, log)
	jc := pki.DefaultJoinClientConfig()
	jc.Logger = log
	joiner := pki.NewJoinClient(jc)
	rc := cfg.Renew
	rc.Initial, rc.Logger = cert, log
	var r *pki.Renewer
	rc.Renew = func(ctx context.Context) (tls.Certificate, error) {
		key, err := pki.NewKey()
		if err != nil {
			return tls.Certificate{}, err
		}
		var errs []error
		for _, addr := range servers.list() {
			next, cas, err := joiner.RenewWithCAs(ctx, addr, bundle.Pool(), r, key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := trustCAs(bundle, dir, cas); err != nil {
				log.Error("keeping the CAs of the renewal's answer", "err", err)
			}
			if err := pki.SaveKeyPair(dir, workerKeyPair, next); err != nil {
				return tls.Certificate{}, err
			}
			return next.TLS()
		}
		return tls.Certificate{}, errors.Join(errs...)
	}
	if r, err = pki.NewRenewer(rc); err != nil {
		return err
	}
	co := workerClientOptions(st.Servers, bundle, r, log)
	// Learn new control nodes as often as servers.run looks for them.
	co.LearnInterval = min(co.LearnInterval, cfg.RegistrationInterval)
	cl, err := client.New(co)
	if err != nil {
		return err
	}
	defer cl.Close()
	servers.setClient(cl)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serversDone := make(chan struct{})
	go func() {
		defer close(serversDone)
		servers.run(ctx, cfg.RegistrationInterval)
	}()
	defer func() { cancel(); <-serversDone }()
	var clusterCIDR func(context.Context) (string, error)
	// gossipErr stays nil (never ready) without gossip.
	var gossipErr chan error
	if cfg.Membership != nil {
		key, err := workerGossipKey(cfg.DataDir)(ctx)
		if err != nil {
			return fmt.Errorf("%w (joined before the cluster handed out gossip keys? run without gossip)", err)
		}
		saved, haveSaved, err := workerRing(cfg.DataDir)
		if err != nil {
			return err
		}
		if haveSaved { // the ring after the last rotation this worker saw
			key = saved.Keys[0]
		}
		info := MemberInfo{Name: st.Name, Role: MemberRoleWorker, Advertise: st.Advertise, BindAddress: st.BindAddress,
			Seeds: func(context.Context) ([]string, error) { return servers.list(), nil },
			PodCIDR: func(ctx context.Context) (string, error) {
				n, err := client.Get[*apiv1.Node](ctx, cl, "", st.Name)
				if status.Code(err) == codes.NotFound {
					return "", nil
				}
				return n.GetSpec().GetPodCIDR(), err
			}}
		gossipErr = make(chan error, 1)
		go func() {
			gossipErr <- runMembership(ctx, cfg.Membership, members, info, func(context.Context) ([]byte, error) { return key, nil })
		}()
		ringDone := make(chan struct{})
		go func() {
			defer close(ringDone)
			_ = followGossipRing(ctx, workerRingInterval, members, func(ctx context.Context) ([][]byte, error) {
				var errs []error
				for _, addr := range servers.list() {
					keys, err := joiner.GossipKeys(ctx, addr, bundle.Pool(), r)
					if err == nil {
						return keys, nil
					}
					errs = append(errs, err)
				}
				if haveSaved { // no control node answers: keep to the saved ring
					return saved.Keys, nil
				}
				return nil, errors.Join(errs...)
			}, saveWorkerRing(cfg.DataDir), log)
		}()
		defer func() { cancel(); <-ringDone }()
		clusterCIDR = func(context.Context) (string, error) {
			for _, c := range members.ControlNodes() {
				if c.ClusterCIDR != "" {
					return c.ClusterCIDR, nil
				}
			}
			return "", errors.New("no control node in the gossip membership announces the cluster range yet")
		}
		defer func() {
			if gossipErr != nil { // not yet read (below)
				cancel()
				<-gossipErr
			}
		}()
	}
	renewErr := make(chan error, 1)
	go func() { renewErr <- r.Run(ctx) }()
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		pollCAs(ctx, cfg.CAPollInterval, servers.list, joiner, bundle, dir, r, log)
	}()
	defer func() { cancel(); <-pollDone }()
	err = retry(ctx, 365*24*time.Hour, func(ctx context.Context) error {
		_, err := client.Create(ctx, cl, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: st.Name}})
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		if err != nil {
			log.Warn("registering the Node object", "err", err)
		}
		return err
	})
	if err != nil {
		cancel()
		<-renewErr
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("register Node %q: %w", st.Name, err)
	}
	if cfg.Worker == nil {
		fmt.Fprintf(cfg.Out, "worker node %s registered with the cluster (%v); holding its certificate (no agent in this process)\n", st.Name, st.Servers)
	} else {
		fmt.Fprintf(cfg.Out, "worker node %s registered with the cluster (%v); running its agent\n", st.Name, st.Servers)
	}
	servicesErr := make(chan error, 1)
	go func() {
		servicesErr <- serveWorker(ctx, cfg, WorkerEnv{Name: st.Name, DataDir: cfg.DataDir, Advertise: st.Advertise, Client: cl, ClusterCIDR: clusterCIDR, Logger: log, Registerer: cfg.Registerer,
			StreamTLS: bundle.NodeStreamServerConfig(r), MetricsTLS: bundle.NodeMetricsServerConfig(r)})
	}()
	// The first of the renewer and the services to end ends the other.
	select {
	case err = <-renewErr:
		cancel()
		if serr := <-servicesErr; err == nil {
			err = serr
		}
		return err
	case err = <-servicesErr:
		cancel()
		if rerr := <-renewErr; err == nil {
			err = rerr
		}
		return err
	case err = <-gossipErr:
		gossipErr = nil
		cancel()
		<-renewErr
		serr := <-servicesErr
		if err == nil { // the member left because ctx ended
			return serr
		}
		return fmt.Errorf("gossip membership: %w", err)
	}
}

// serveWorker runs the services of a registered worker in this process
// until ctx ends: its metrics (the mTLS port, --metrics-addr) and the agent
// (cfg.Worker). Every service started on a worker starts here; the first
// to end ends the others.
func serveWorker(ctx context.Context, cfg Config, env WorkerEnv) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	services := []func(context.Context) error{func(ctx context.Context) error { return serveWorkerServices(ctx, cfg, env) }}
	lis, err := workerMetricsListener(cfg, env)
	if err != nil {
		return err
	}
	if lis != nil {
		services = append(services, func(ctx context.Context) error {
			return ServeMetrics(ctx, lis, env.MetricsTLS, cfg.Gatherer, env.Logger)
		})
	}
	if cfg.MetricsAddr != "" {
		services = append(services, func(ctx context.Context) error {
			return ListenAndServeMetrics(ctx, cfg.MetricsAddr, cfg.Gatherer, env.Logger)
		})
	}
	errs := make(chan error, len(services))
	for _, run := range services {
		go func() { errs <- run(ctx) }()
	}
	err = <-errs
	cancel()
	for range len(services) - 1 {
		<-errs
	}
	return err
}

// workerMetricsListener opens the worker's metrics port at its advertise
// address (nil: none). The default port is best effort, as on a control
// node (another daemon may hold it); a port the operator chose must open.
func workerMetricsListener(cfg Config, env WorkerEnv) (net.Listener, error) {
	port := cfg.MetricsPort
	if port < 0 || env.MetricsTLS == nil || cfg.Gatherer == nil {
		return nil, nil
	}
	explicit := port != 0
	if !explicit {
		port = DefaultWorkerMetricsPort
	}
	addr := net.JoinHostPort(env.Advertise, strconv.Itoa(port))
	lis, err := net.Listen("tcp", addr)
	switch {
	case err != nil && explicit:
		return nil, fmt.Errorf("--metrics-port %d: %w", port, err)
	case err != nil:
		env.Logger.Warn("metrics port not served (pass --metrics-port to choose another, -1 for none)", "address", addr, "err", err)
		return nil, nil
	}
	return lis, nil
}

func serveWorkerServices(ctx context.Context, cfg Config, env WorkerEnv) error {
	if cfg.Worker == nil {
		<-ctx.Done()
		return nil
	}
	if err := cfg.Worker(ctx, env); err != nil {
		return fmt.Errorf("worker %s: %w", env.Name, err)
	}
	return nil
}

// workerClientOptions is the client of a worker and of its agent: each
// handshake presents the certificate src holds then (the renewer's
// current one) and checks the server against the CAs bundle holds then
// (ca.crt, replaced by each renewal's and CA poll's answer), so neither a
// renewal nor a CA rotation needs a new client.
func workerClientOptions(servers []string, bundle *pki.Bundle, src pki.CertSource, log *slog.Logger) client.Options {
	o := client.DefaultOptions()
	o.Servers, o.Logger = servers, log
	o.TLS = bundle.ClientConfig(src, "")
	return o
}

// trustCAs makes casPEM (the signer first) the CAs a worker trusts, here
// and in its PKI directory (node.conf names ca.crt).
func trustCAs(bundle *pki.Bundle, dir string, casPEM []byte) error {
	if len(casPEM) == 0 || string(casPEM) == string(bundle.PEM()) {
		return nil
	}
	first, err := pki.ParseCA(casPEM, nil)
	if err != nil {
		return err
	}
	all, err := pki.ParseCertificatesPEM(casPEM)
	if err != nil {
		return err
	}
	if err := bundle.Set(first, all[1:]...); err != nil {
		return err
	}
	return bundle.Save(dir)
}

// pollCAs asks the control nodes for the cluster's CAs every interval
// until ctx ends. When the signer is not the CA of this worker's
// certificate (a CA rotation started), it trusts the new list at once —
// before the control nodes switch to the new CA at finish — and renews,
// so that the rotation can finish without waiting for the certificate to
// fall due. Failures are logged and retried at the next tick.
func pollCAs(ctx context.Context, interval time.Duration, servers func() []string, joiner *pki.JoinClient, bundle *pki.Bundle, dir string, r *pki.Renewer, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		var cas []byte
		var errs []error
		for _, addr := range servers() {
			b, err := joiner.TrustedCAs(ctx, addr, bundle.Pool(), r)
			if err == nil {
				cas = b
				break
			}
			errs = append(errs, err)
		}
		if cas == nil {
			log.Warn("asking the control nodes for the cluster's CAs", "err", errors.Join(errs...))
			continue
		}
		if err := trustCAs(bundle, dir, cas); err != nil {
			log.Error("keeping the cluster's CAs", "err", err)
			continue
		}
		if cur := r.Current(); cur.Leaf != nil && cur.Leaf.CheckSignatureFrom(bundle.Signer().Cert) != nil {
			log.Warn("the cluster CA changed: renewing this node's certificate now", "signer", bundle.Signer().Cert.Subject.CommonName)
			r.RenewNow()
		}
	}
}
