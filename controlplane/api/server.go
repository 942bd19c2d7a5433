package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// Version is reported by the Version RPC; the build may override it.
var Version = "v0.1.0-dev"

// Config configures an API server.
type Config struct {
	// Store is this control node's replicated store (required).
	Store *consensus.Store
	// Registry holds the kinds served; nil means kinds.NewRegistry().
	Registry *kinds.Registry
	// Authorizer decides every request; nil means AllowAll.
	Authorizer Authorizer
	// RetryBackoff is the pause before a deletion step that must wait
	// (foreground dependents, namespace contents) is tried again.
	RetryBackoff time.Duration
	// DefaultNamespaces are created at start if missing.
	DefaultNamespaces []string
	// WriteBatches is how many batches of object writes may be committing
	// in Raft at once (group commit: writes arriving meanwhile wait and go
	// in the next batch). Fewer means larger batches, so fewer Raft
	// entries and log fsyncs per write, at the price of latency.
	WriteBatches int
	// APIServers lists the API addresses of the current control nodes,
	// reported by Version so that clients learn where to fail over; nil
	// reports none.
	APIServers func(context.Context) ([]string, error)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (tests may fix it).
	Now func() time.Time
	// Limits cap what one identity holds open (limits.go).
	Limits Limits
	// NodeStreams is how logs, exec, attach and port-forward reach the
	// agents (podstreams.go).
	NodeStreams NodeStreamsConfig
	// ServiceAccountTokens: this API's cluster mints service account
	// tokens and publishes its CA as ConfigMap kube-root-ca.crt (a control
	// node does), so the ServiceAccount admission mounts the token in
	// pods (admission_apiaccess.go). Off in test servers without either,
	// whose pods could not start with the volume.
	ServiceAccountTokens bool
	// admissionPlugins replaces the admission chain (tests); nil means
	// admissionPlugins as registered.
	admissionPlugins []func(*Server) admissionPlugin
}

// DefaultConfig returns the production defaults; Store must still be set.
func DefaultConfig() Config {
	return Config{
		RetryBackoff:      500 * time.Millisecond,
		DefaultNamespaces: []string{"default", "kube-system", kinds.NodeLeaseNamespace},
		WriteBatches:      4,
		Logger:            slog.Default(),
		Now:               time.Now,
	}
}

// Server implements apiv1.APIServer on top of a consensus.Store.
type Server struct {
	apiv1.UnimplementedAPIServer
	cfg   Config
	store *consensus.Store
	// writes group concurrent object writes into store batches.
	writes *consensus.TxnBatcher
	// watchDecodes shares decoded records among selector watches.
	watchDecodes *decodeCache
	reg          *kinds.Registry
	log          *slog.Logger
	metrics      *metrics
	limits       *limiter
	tasks        *taskQueue
	// workers runs CreateMany's objects (and other fan-out).
	workers *workers
	// admission is the admission chain per kind and op.
	admission admissionChains
	health    *health.Server
	wg        sync.WaitGroup
	// nodeConns are the connections to agents' stream ports.
	nodeConns nodeConns
}

// New builds a server. It serves nothing until Register/Serve, and does no
// background work until Run.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: api config: Store is required", ErrInvalid)
	}
	def := DefaultConfig()
	if cfg.Registry == nil {
		cfg.Registry = kinds.NewRegistry()
	}
	if cfg.Authorizer == nil {
		cfg.Authorizer = AllowAll{}
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = def.RetryBackoff
	}
	if cfg.WriteBatches <= 0 {
		cfg.WriteBatches = def.WriteBatches
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, store: cfg.Store, writes: consensus.NewTxnBatcher(cfg.Store, cfg.WriteBatches), watchDecodes: newDecodeCache(8192), reg: cfg.Registry,
		log: cfg.Logger.With("component", "api"), health: health.NewServer()}
	if err := checkRawLayout(cfg.Registry); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.metrics = newMetrics(cfg.Registerer, s.reg, s.log)
	s.limits = newLimiter(cfg.Limits, cfg.Registerer)
	s.tasks = newTaskQueue()
	s.workers = newWorkers()
	plugins := cfg.admissionPlugins
	if plugins == nil {
		plugins = admissionPlugins
	}
	chain := make([]admissionPlugin, 0, len(plugins))
	for _, newPlugin := range plugins {
		chain = append(chain, newPlugin(s))
	}
	s.admission = newAdmissionChains(cfg.Registry, chain)
	return s, nil
}

// Registry returns the kinds the server serves.
func (s *Server) Registry() *kinds.Registry { return s.reg }

// streamWorkers is the gRPC server's pool of goroutines for calls.
const streamWorkers = 256

// ServerOptions are the gRPC options the API needs: identity extraction
// from the peer certificate and request metrics. Callers that build their
// own grpc.Server (to share the port with other services) must pass them.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Calls run on reused goroutines (a new one when all are busy, as
		// without the option): a fresh goroutine's stack grows, by copying,
		// to fit the object decoders, and that cost as much as decoding.
		// Long-lived watches hold a worker each, so have plenty.
		grpc.NumStreamWorkers(streamWorkers),
		// Clients ping every 10 s (gRPC's floor) to find a silent server
		// under an idle connection or a long watch; the default policy (one
		// ping per 5 min) would answer that with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unaryIdentity, s.limits.unary, s.metrics.unary),
		grpc.ChainStreamInterceptor(streamIdentity, s.limits.stream, s.metrics.stream),
	}
}

// Interceptors are the interceptors of ServerOptions (identity, limits,
// metrics), in order, for a server that runs them only for some calls:
// the certificate-less side of the API port runs them for calls a bearer
// token authenticated, not for the join service.
func (s *Server) Interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	return []grpc.UnaryServerInterceptor{unaryIdentity, s.limits.unary, s.metrics.unary},
		[]grpc.StreamServerInterceptor{streamIdentity, s.limits.stream, s.metrics.stream}
}

// Register puts the API, the gRPC health service and server reflection on g.
func (s *Server) Register(g *grpc.Server) {
	apiv1.RegisterAPIServer(g, s)
	streamv1.RegisterPodStreamsServer(g, &podStreams{s: s})
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
}

// NewGRPCServer returns a gRPC server with mutual TLS and everything
// Register adds. tlsConfig must require and verify client certificates.
func (s *Server) NewGRPCServer(tlsConfig *tls.Config) (*grpc.Server, error) {
	if tlsConfig == nil || tlsConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, fmt.Errorf("%w: api TLS config must require and verify client certificates", ErrInvalid)
	}
	g := grpc.NewServer(append(s.ServerOptions(), grpc.Creds(credentials.NewTLS(tlsConfig)))...)
	s.Register(g)
	return g, nil
}

// Serve runs the API on lis with mutual TLS until ctx ends, together with
// the server's background work (Run).
func (s *Server) Serve(ctx context.Context, lis net.Listener, tlsConfig *tls.Config) error {
	g, err := s.NewGRPCServer(tlsConfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	select {
	case <-ctx.Done():
		g.Stop()
		<-serveErr
		return <-runErr
	case err := <-serveErr:
		cancel()
		<-runErr
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve API on %s: %w", lis.Addr(), err)
		}
		return nil
	}
}

// Run does the server's background work until ctx ends: it creates the
// default namespaces and runs deletion tasks queued by requests (cascades,
// foreground waits, namespace cleanup). The sweep for deletions a crashed
// server left unfinished (Collect) is a leader loop: the garbagecollector
// controller.
func (s *Server) Run(ctx context.Context) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(apiv1.API_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	defer s.health.Shutdown()
	defer s.nodeConns.closeAll()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.ensureNamespaces(ctx) }()
	s.tasks.run(ctx, s.log, s.cfg.RetryBackoff)
	s.wg.Wait()
	return nil
}

// ensureNamespaces creates the default namespaces and the kinds' built-in
// objects (kinds.BuiltinObjects: the system PriorityClasses), retrying until
// the store accepts the writes (it may have no leader yet).
func (s *Server) ensureNamespaces(ctx context.Context) {
	k, _ := s.reg.ForKind("Namespace")
	var objs []kinds.Object
	for _, name := range s.cfg.DefaultNamespaces {
		ns := k.New()
		kinds.Meta(ns).Name = name
		objs = append(objs, ns)
	}
	objs = append(objs, kinds.BuiltinObjects()...)
	for _, obj := range objs {
		ok, found := s.reg.ForKind(obj.GetKind())
		if !found {
			continue // a registry without the kind (tests of other kinds)
		}
		for {
			_, err := s.create(ctx, ok, codec.Clone(obj), false)
			if err == nil || errors.Is(err, ErrAlreadyExists) {
				break
			}
			s.log.Debug("creating built-in object", "kind", obj.GetKind(), "name", obj.GetMetadata().GetName(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.RetryBackoff):
			}
		}
	}
}

// Version reports the server version and this node's view of the cluster.
func (s *Server) Version(ctx context.Context, _ *apiv1.VersionRequest) (*apiv1.VersionResponse, error) {
	id, _ := s.store.Leader()
	resp := &apiv1.VersionResponse{Version: Version, Node: s.store.ID(), Leader: s.store.IsLeader(),
		LeaderId: id, Revision: s.store.Revision()}
	if s.cfg.APIServers != nil {
		// Best effort: the version answers even when the list cannot be read.
		if addrs, err := s.cfg.APIServers(ctx); err == nil {
			resp.ApiServers = addrs
		} else {
			s.log.Debug("listing API servers for Version", "err", err)
		}
	}
	return resp, nil
}
