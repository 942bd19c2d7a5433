package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/audit"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/rbac"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// Control is a running control node.
type Control struct {
	cfg   Config
	state State
	log   *slog.Logger
	// bundle is the cluster's CAs: the signer and the trusted set, which
	// change without a restart during a CA rotation (cabundle.go).
	bundle  *pki.Bundle
	cas     *caWatcher
	renewer *pki.Renewer
	// ownRenewed wakes recordOwn after the renewer swapped certificates.
	ownRenewed chan struct{}
	Store      *consensus.Store
	API        *api.Server
	Tokens     *pki.Tokens
	audit      *audit.Log
	split      *pki.SplitListener
	// deny is the replicated deny list in force on both ports; apiConns
	// lets a revocation cut open API connections.
	deny        *pki.DenyList
	revocations *revocations
	apiConns    *pki.GuardedListener
	anon        *grpc.Server
	authed      *grpc.Server

	// graph is the node authorizer's index of what pods reference.
	graph *api.NodeGraph
	// rbac is the RBAC policy cache, tokens and Authorization service.
	rbac *rbacParts
	// apiServers: the control nodes' API addresses, for Version and admin.conf.
	apiServers apiServers
	// members is the gossip member once it runs (Config.Membership).
	members memberView
	// metricsAddr is where the metrics port listens (metrics.go).
	metricsAddr atomic.Value
	// dash is the web dashboard; nil when Config.DashboardPort is 0.
	dash *controlDashboard
}

// State is the node's node.json.
func (c *Control) State() State { return c.state }

// controlTLS loads the CA bundle (the signer with its key) and this node's
// key pair and returns a renewer that re-signs the key pair locally, with
// the signer of the moment, before it expires.
//
// serving, when set, picks the CA of each renewal (a CA rotation keeps
// control nodes on the old CA until it finishes); onRenewed is told of
// each new certificate.
func controlTLS(cfg Config, st State, serving func() *pki.CA, onRenewed func(tls.Certificate)) (*pki.Bundle, *pki.Renewer, error) {
	dir := filepath.Join(cfg.DataDir, PKIDir)
	bundle, err := pki.LoadBundle(dir)
	if err != nil {
		return nil, nil, err
	}
	if bundle.Signer().Key == nil {
		return nil, nil, fmt.Errorf("%s: the CA key (%s) is missing; a control node needs it to sign joins", dir, pki.CAKeyFile)
	}
	kp, err := pki.LoadKeyPair(dir, controlKeyPair)
	if err != nil {
		return nil, nil, fmt.Errorf("control node key pair in %s: %w", dir, err)
	}
	cert, err := kp.TLS()
	if err != nil {
		return nil, nil, err
	}
	id, err := pki.ControlIdentity(st.Name)
	if err != nil {
		return nil, nil, err
	}
	rc := cfg.Renew
	rc.Initial = cert
	rc.Logger, rc.OnRenewed = cfg.Logger, onRenewed
	if serving == nil {
		serving = bundle.Signer
	}
	var r *pki.Renewer
	rc.Renew = func(context.Context) (tls.Certificate, error) {
		// Control nodes hold the CA key: sign a new key pair locally with
		// the same identity and addresses.
		cur := r.Current()
		next, _, err := serving().Issue(pki.IssueOptions{Identity: id, Lifetime: cfg.NodeCertLifetime, Server: true, Hosts: pki.HostsOf(cur.Leaf)})
		if err != nil {
			return tls.Certificate{}, err
		}
		if err := pki.SaveKeyPair(dir, controlKeyPair, next); err != nil {
			return tls.Certificate{}, err
		}
		return next.TLS()
	}
	if r, err = pki.NewRenewer(rc); err != nil {
		return nil, nil, err
	}
	return bundle, r, nil
}

func storeConfig(cfg Config, st State, bundle *pki.Bundle, src pki.CertSource, deny *pki.DenyList, bootstrap bool) consensus.Config {
	sc := consensus.DefaultConfig()
	sc.ID = st.Name
	sc.DataDir = filepath.Join(cfg.DataDir, RaftDir)
	sc.BindAddr = st.raftBind()
	sc.AdvertiseAddr = st.RaftAddress()
	sc.ServerTLS = bundle.ServerConfig(pki.ServerTLSConfig(bundle.Pool(), src, tls.RequireAndVerifyClientCert))
	sc.ClientTLS = bundle.ClientConfig(src, "")
	sc.PeerIdentity = storePeerIdentity(deny, bundle)
	sc.JoinMembers = st.JoinMembers
	sc.Bootstrap = bootstrap
	sc.Logger = cfg.Logger
	sc.Registerer = cfg.Registerer
	sc.LogStore = cfg.RaftLogStore
	if cfg.Store != nil {
		cfg.Store(&sc)
	}
	return sc
}

// startControl opens the store and serves the API port. Close stops it.
func startControl(cfg Config, st State, bootstrap bool) (_ *Control, err error) {
	log := cfg.Logger.With("node", st.Name)
	c := &Control{cfg: cfg, state: st, log: log, deny: &pki.DenyList{}, ownRenewed: make(chan struct{}, 1)}
	serving := func() *pki.CA { return c.cas.servingCA() } // c.cas is set before the renewer runs
	bundle, renewer, err := controlTLS(cfg, st, serving, ownRenewedSignal(c.ownRenewed))
	if err != nil {
		return nil, err
	}
	c.bundle, c.renewer = bundle, renewer
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.Store, err = consensus.Open(storeConfig(cfg, st, bundle, renewer, c.deny, bootstrap)); err != nil {
		return nil, fmt.Errorf("open the store (%s): %w", filepath.Join(cfg.DataDir, RaftDir), err)
	}
	c.revocations = &revocations{store: c.Store, deny: c.deny, bundle: bundle, log: log.With("component", "revocations"), changed: c.recheckConnections}
	c.cas = &caWatcher{store: c.Store, bundle: bundle, dir: filepath.Join(cfg.DataDir, PKIDir), log: log.With("component", "ca"), changed: c.caChanged}
	if _, err := c.cas.load(context.Background()); err != nil {
		return nil, err
	}
	// In force before the API port opens: what this node's store holds now
	// (its snapshot); the watch in Run follows from there.
	if _, err := c.revocations.load(context.Background()); err != nil {
		return nil, err
	}
	if bootstrap && !st.Bootstrapped {
		c.state.Bootstrapped = true
		if err := saveState(cfg.DataDir, c.state); err != nil {
			return nil, err
		}
	}
	if c.audit, err = audit.Open(audit.Config{Dir: filepath.Join(cfg.DataDir, AuditDir), MaxBytes: cfg.AuditMaxBytes, MaxBackups: audit.DefaultConfig().MaxBackups}); err != nil {
		return nil, err
	}
	tc := pki.DefaultTokensConfig()
	tc.Pin = bundle.Signer().Pin()
	tc.CurrentPin = func() string { return bundle.Signer().Pin() }
	if c.Tokens, err = pki.NewTokens(tokenStore{c.Store}, tc); err != nil {
		return nil, err
	}
	ac := api.DefaultConfig()
	ac.Registry = kinds.NewRegistry()
	c.graph = api.NewNodeGraph(c.Store, ac.Registry, log)
	var az Authorizer
	c.rbac, az = newRBACParts(c.Store, ac.Registry, c.graph, bundle, log)
	if err := c.rbac.tokens.SetMinLifetime(cfg.ServiceAccountMinTokenLifetime); err != nil {
		return nil, err
	}
	ac.Store, ac.Authorizer, ac.Logger, ac.Registerer = c.Store, az, log, cfg.Registerer
	ac.Limits = cfg.APILimits
	ac.Limits.ExemptGroups = append([]string{pki.GroupControl}, cfg.APILimits.ExemptGroups...)
	c.apiServers.set([]string{st.APIAddress()})
	ac.APIServers = func(context.Context) ([]string, error) { return c.apiServers.get(), nil }
	ac.NodeStreams = nodeStreams(bundle, renewer, c.audit, log)
	ac.ServiceAccountTokens = true // rbac.Tokens and rbac.RootCAPublisher run here
	if c.API, err = api.New(ac); err != nil {
		return nil, err
	}
	live, err := newLiveNodes(c.Store, c.API.Registry(), cfg.NodeLiveWindow)
	if err != nil {
		return nil, err
	}
	jc := pki.DefaultJoinServerConfig()
	jc.Bundle, jc.Tokens, jc.Members, jc.Logger, jc.NodeCertLifetime = bundle, c.Tokens, storeMembers{c.Store}, log, cfg.NodeCertLifetime
	jc.UserCertLifetime, jc.CheckJoin = cfg.UserCertLifetime, live.checkJoin
	jc.APIAddresses = func(ctx context.Context) ([]string, error) { return apiAddresses(ctx, c.Store) }
	jc.Issued = certRecorder{store: c.Store, bundle: bundle, log: log}.issued
	jc.GossipKey = func(ctx context.Context) ([]byte, error) { return primaryGossipKey(ctx, c.Store) }
	jc.GossipKeys = func(ctx context.Context) ([][]byte, error) {
		r, _, err := readGossipRing(ctx, c.Store)
		return r.Keys, err
	}
	joinSrv, err := pki.NewJoinServer(jc)
	if err != nil {
		return nil, err
	}
	self := controlRecord{ID: st.Name, APIAddress: st.APIAddress(), RaftAddress: st.RaftAddress()}
	admin := &adminServer{store: c.Store, tokens: c.Tokens, bundle: bundle, self: self, userLife: cfg.UserCertLifetime, revocations: c.revocations,
		clientTLS: bundle.ClientConfig(renewer, ""), log: log.With("component", "admin"), members: &c.members}

	lis, err := listen(st.apiBind())
	if err != nil {
		return nil, err
	}
	apiTLS := pki.ServerTLSConfig(bundle.Pool(), renewer, tls.VerifyClientCertIfGiven)
	apiTLS.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // no certificate: the join service only (SplitListener)
		}
		return c.checkAPIClient(cs.PeerCertificates[0])
	}
	apiTLS = bundle.ServerConfig(apiTLS) // last: it copies apiTLS per handshake
	if c.split, err = pki.NewSplitListener(lis, apiTLS, log); err != nil {
		lis.Close()
		return nil, err
	}
	c.apiConns = pki.NewGuardedListener(c.split.Authenticated(), c.checkAPIClient, log.With("component", "tls"))
	aud := &auditor{log: c.audit, reg: c.API.Registry(), lg: log}
	c.anon = grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(pki.HandshakenTLS()), grpc.UnknownServiceHandler(anonymousOnly),
		grpc.ChainUnaryInterceptor(aud.unary)}, c.rbac.anonOptions(c.API)...)...)
	joinv1.RegisterJoinServer(c.anon, joinSrv)
	// Service accounts' tokens (no certificate) reach the API here.
	c.API.Register(c.anon)
	apiv1.RegisterAuthorizationServer(c.anon, c.rbac.service)
	c.authed = grpc.NewServer(append(c.API.ServerOptions(), grpc.Creds(pki.HandshakenTLS()),
		grpc.ChainUnaryInterceptor(aud.unary), grpc.ChainStreamInterceptor(aud.stream))...)
	c.API.Register(c.authed)
	joinv1.RegisterJoinServer(c.authed, joinSrv)
	adminv1.RegisterAdminServer(c.authed, admin)
	apiv1.RegisterAuthorizationServer(c.authed, c.rbac.service)
	if cfg.DashboardPort > 0 {
		if err := c.newDashboard(cfg, aud); err != nil {
			return nil, fmt.Errorf("dashboard: %w", err)
		}
	}
	return c, nil
}

// recheckConnections closes open connections, on both ports, whose
// certificates the deny list (or the membership) now refuses.
func (c *Control) recheckConnections() {
	c.Store.RecheckPeers()
	if c.apiConns != nil {
		c.apiConns.Recheck()
	}
}

// listen retries briefly: a restarted node's port may linger a moment.
func listen(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 20; i++ {
		var lis net.Listener
		if lis, err = net.Listen("tcp", addr); err == nil {
			return lis, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("listen on %s (API port): %w", addr, err)
}

// Run serves until ctx ends or a part fails. ready, if set, runs once the
// ports serve; its error stops the node.
func (c *Control) Run(ctx context.Context, ready func(context.Context, *Control) error) error {
	TuneRuntime(c.log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	var runningMu sync.Mutex
	running := map[string]bool{}
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		runningMu.Lock()
		running[name] = true
		runningMu.Unlock()
		goRun(ctx, errs, name, func(ctx context.Context) error {
			defer wg.Done()
			defer func() { runningMu.Lock(); delete(running, name); runningMu.Unlock() }()
			return f(ctx)
		})
	}
	serve := func(g *grpc.Server, l net.Listener) func(context.Context) error {
		return func(ctx context.Context) error {
			err := g.Serve(l)
			if ctx.Err() != nil || errors.Is(err, grpc.ErrServerStopped) {
				return nil
			}
			return err
		}
	}
	start("serve API port (authenticated)", serve(c.authed, c.apiConns))
	start("serve API port (join)", serve(c.anon, c.split.Anonymous()))
	start("API server", c.API.Run)
	start("node authorization graph", c.graph.Run)
	start("RBAC policy cache", c.rbac.cache.Run)
	start("certificate renewal", c.renewer.Run)
	start("deny list", c.revocations.run)
	start("CA bundle", c.cas.run)
	start("certificate record", c.recordOwn)
	start("control node registration", c.register)
	start("metrics", c.serveMetrics)
	if c.dash != nil {
		start("dashboard", func(ctx context.Context) error { return c.dash.run(ctx, c) })
	}
	if c.cfg.Membership != nil {
		info := MemberInfo{Name: c.state.Name, Role: MemberRoleControl, Advertise: c.state.Advertise, BindAddress: c.state.BindAddress,
			APIAddress: c.state.APIAddress(), Seeds: func(ctx context.Context) ([]string, error) { return apiAddresses(ctx, c.Store) },
			ClusterCIDR: func(ctx context.Context) (string, error) {
				n, err := loadClusterNetwork(ctx, c.Store)
				if err != nil {
					return "", err
				}
				return n.Config().ClusterCIDR, nil
			}}
		start("gossip membership", func(ctx context.Context) error {
			return runMembership(ctx, c.cfg.Membership, &c.members, info, func(ctx context.Context) ([]byte, error) { return primaryGossipKey(ctx, c.Store) })
		})
		start("gossip key ring", func(ctx context.Context) error {
			return followGossipRing(ctx, controlRingInterval, &c.members, func(ctx context.Context) ([][]byte, error) {
				r, _, err := readGossipRing(ctx, c.Store)
				return r.Keys, err
			}, nil, c.log)
		})
	}
	if c.cfg.Loops != nil {
		start("leader loops", c.runLoops)
	}
	if ready != nil {
		start("start-up", func(ctx context.Context) error { return ready(ctx, c) })
	}
	fmt.Fprintf(c.cfg.Out, "control node %s serving: API %s, store %s (data dir %s)\n", c.state.Name, c.state.APIAddress(), c.state.RaftAddress(), c.cfg.DataDir)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	for first == nil && ctx.Err() == nil {
		// A part that ended without error (start-up) is not a reason to stop.
		select {
		case <-ctx.Done():
		case first = <-errs:
		}
	}
	if first == nil {
		c.handOffLeadership()
	}
	cancel()
	stopAt := time.Now()
	c.stopServing()
	if took := time.Since(stopAt); took > time.Second {
		c.log.Warn("stopping: the API server took long to stop its calls", "took", took.Round(time.Millisecond))
	}
	// A part slow to stop delays a planned restart: name it.
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		runningMu.Lock()
		names := slices.Sorted(maps.Keys(running))
		runningMu.Unlock()
		c.log.Warn("stopping: parts still running a second after the stop", "parts", names)
		<-stopped
	}
	return first
}

// handOffLeadership gives leadership to another voter before a planned
// stop (SIGTERM, SIGINT): the cluster then writes on within a round trip
// instead of waiting out an election timeout after this node is gone.
// Failing (no other voter, or none caught up) only costs that timeout.
func (c *Control) handOffLeadership() {
	if !c.Store.IsLeader() {
		return
	}
	start := time.Now()
	if err := c.Store.TransferLeadership(); err != nil {
		c.log.Warn("stopping as leader: leadership transfer failed; the others elect a leader after the election timeout", "err", err)
		return
	}
	// The new leader's id may not have reached this node yet: not logged.
	c.log.Info("stopping: handed leadership over", "took", time.Since(start).Round(time.Millisecond))
}

func (c *Control) stopServing() {
	done := make(chan struct{})
	go func() {
		c.authed.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second): // watches never end on their own
		c.authed.Stop()
	}
	c.anon.Stop()
	_ = c.split.Close()
}

// Close releases everything; call it after Run returned.
func (c *Control) Close() error {
	var errs []error
	if c.authed != nil {
		c.authed.Stop()
	}
	if c.anon != nil {
		c.anon.Stop()
	}
	if c.split != nil {
		_ = c.split.Close()
	}
	if c.dash != nil {
		c.dash.inproc.Close()
	}
	if c.Store != nil {
		errs = append(errs, c.Store.Close())
	}
	if c.audit != nil {
		errs = append(errs, c.audit.Close())
	}
	return errors.Join(errs...)
}

// tokenKeep is how long expired or revoked join tokens are kept.
const tokenKeep = 7 * 24 * time.Hour

// register keeps this node's API address in the store (every node; the
// leader's tokenPruner loop prunes dead join tokens).
func (c *Control) register(ctx context.Context) error {
	rec := controlRecord{ID: c.state.Name, APIAddress: c.state.APIAddress(), RaftAddress: c.state.RaftAddress()}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := registerControl(rctx, c.Store, rec)
		cancel()
		if err != nil {
			c.log.Debug("registering the API address", "err", err)
			wait = time.Second
			continue
		}
		rctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		if err := c.refreshAPIServers(rctx); err != nil {
			c.log.Warn("refreshing the control nodes' API addresses (admin.conf)", "err", err)
		}
		cancel()
		wait = c.cfg.RegistrationInterval
	}
}

// ClientTLS is a client TLS config presenting this node's certificate.
func (c *Control) ClientTLS() *tls.Config { return c.bundle.ClientConfig(c.renewer, "") }

func (c *Control) runLoops(ctx context.Context) error {
	o := client.DefaultOptions()
	o.Servers, o.TLS, o.Logger = []string{c.state.APIAddress()}, c.ClientTLS(), c.log
	cl, err := client.New(o)
	if err != nil {
		return err
	}
	defer cl.Close()
	deps := LoopDeps{Client: cl, Node: c.state.Name, Logger: c.log, Registerer: c.cfg.Registerer, Sweeper: c.API,
		ClusterNetwork: c.leaderClusterNetwork, APIServers: func(ctx context.Context) ([]string, error) { return apiAddresses(ctx, c.Store) }}
	if c.cfg.Membership != nil {
		deps.Members = &c.members
	}
	loops, err := c.cfg.Loops(deps)
	if err != nil {
		return fmt.Errorf("build leader loops: %w", err)
	}
	loops = append(loops, rbac.NewLoop(cl, c.API.Registry(), c.log), rbac.NewRootCAPublisher(cl, c.bundle.PEM, c.log), tokenPruner{tokens: c.Tokens, revocations: c.revocations, store: c.Store, every: c.cfg.RegistrationInterval, log: c.log})
	lc := controlplane.DefaultLeaderConfig()
	lc.Logger, lc.Registerer = c.log, c.cfg.Registerer
	return controlplane.NewLeaderLoops(lc, c.Store, loops...).Run(ctx)
}

// writeAdminConfig issues an admin certificate and writes a client config
// (certificates inline, so the file can be copied to another machine).
// caPEM is the CAs the client trusts (a CA bundle during a rotation).
func writeAdminConfig(dataDir string, ca *pki.CA, caPEM []byte, servers []string, lifetime time.Duration) (string, error) {
	kp, _, err := ca.Issue(pki.IssueOptions{Identity: pki.AdminIdentity(), Lifetime: lifetime})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, AdminConfigFile)
	cc := inlineConfig(servers, caPEM, kp)
	if err := cc.Save(path); err != nil {
		return "", err
	}
	return path, nil
}

// InlineConfig is a client config carrying its certificates and key.
func inlineConfig(servers []string, caPEM []byte, kp pki.KeyPair) *client.Config {
	return &client.Config{Servers: servers, CertificateAuthorityData: b64(caPEM),
		ClientCertificateData: b64(kp.CertPEM), ClientKeyData: b64(kp.KeyPEM)}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
