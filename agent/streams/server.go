package streams

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/agent/runtime"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// DefaultPort is the agent's stream port.
const DefaultPort = 7445

// ErrBadRequest marks a request that names no pod, no port, or a
// container the pod does not have.
var ErrBadRequest = errors.New("bad stream request")

// Runtime is what the server needs of agent/runtime.
type Runtime interface {
	PodIdentity(uid string) (runtime.PodIdentity, error)
	Logs(ctx context.Context, uid, container string, opts runtime.LogOptions, w io.Writer) error
	Exec(ctx context.Context, uid, container string, opts runtime.ExecOptions) (int, error)
	Attach(ctx context.Context, uid, container string, opts runtime.AttachOptions) (runtime.AttachResult, error)
	DialPort(ctx context.Context, uid string, port int) (net.Conn, error)
}

// Config of a Server.
type Config struct {
	Runtime Runtime
	// TLS must require and verify client certificates.
	TLS *tls.Config
	// AllowPeer decides each call on the caller's verified certificate
	// (required): nil to serve, an error saying why not.
	AllowPeer func(leaf *x509.Certificate) error
	Logger    *slog.Logger
}

// Server serves NodeStreams.
type Server struct {
	streamv1.UnimplementedNodeStreamsServer
	cfg Config
	log *slog.Logger
}

// New checks cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Runtime == nil || cfg.AllowPeer == nil {
		return nil, errors.New("stream server: Runtime and AllowPeer are required")
	}
	if cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("stream server: the TLS config must require and verify client certificates")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "streams")}, nil
}

// streamWindow is the HTTP/2 flow-control window of each stream toward
// the node (exec's stdin, port-forward's uploads): what may be in flight
// before the handler takes it, as api.NodeStreamWindow is the other way.
const streamWindow = 1 << 20

// writeBuffer is how much of a connection's outgoing HTTP/2 frames are
// gathered before one write to TLS: gRPC's default (32 KiB) makes a write
// and a system call per two 16 KiB frames of a bulk stream.
const writeBuffer = 256 << 10

// TransportOptions are the stream port's HTTP/2 settings: windows and
// buffers sized for bulk output (logs, cp) of a few streams per
// connection (the API servers'), each still bounded.
func TransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(4 * streamWindow),
		grpc.WriteBufferSize(writeBuffer), grpc.ReadBufferSize(writeBuffer),
	}
}

// Serve answers on lis until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	g := grpc.NewServer(append(TransportOptions(), grpc.Creds(credentials.NewTLS(s.cfg.TLS)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.StreamInterceptor(s.authorize), grpc.UnaryInterceptor(s.authorizeUnary))...)
	streamv1.RegisterNodeStreamsServer(g, s)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case <-ctx.Done():
		g.Stop() // ends every call: their contexts are cancelled
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}

func (s *Server) check(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	leaf := ti.State.VerifiedChains[0][0]
	if err := s.cfg.AllowPeer(leaf); err != nil {
		s.log.Warn("stream call refused", "peer", leaf.Subject.CommonName, "remote", p.Addr, "err", err)
		return status.Errorf(codes.PermissionDenied, "forbidden: %s may not use the node stream port: %v (users go through the API server)", leaf.Subject.CommonName, err)
	}
	return nil
}

func (s *Server) authorize(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.check(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

func (s *Server) authorizeUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// resolve checks that ref's uid is the pod it names and picks the
// container (the only one when none is named).
func (s *Server) resolve(ref *streamv1.PodRef) (uid, container string, err error) {
	if ref.GetUid() == "" {
		return "", "", status.Error(codes.InvalidArgument, "pod.uid: required (the API server sets it)")
	}
	id, err := s.cfg.Runtime.PodIdentity(ref.GetUid())
	if err != nil {
		return "", "", toStatus(err)
	}
	if id.Namespace != ref.GetNamespace() || id.Name != ref.GetName() {
		return "", "", status.Errorf(codes.NotFound, "pod %s/%s: uid %s on this node is pod %s/%s", ref.GetNamespace(), ref.GetName(), ref.GetUid(), id.Namespace, id.Name)
	}
	c := ref.GetContainer()
	if c == "" {
		if len(id.Containers) != 1 {
			return "", "", status.Errorf(codes.InvalidArgument, "pod %s/%s has %d containers (%v): name one", id.Namespace, id.Name, len(id.Containers), id.Containers)
		}
		c = id.Containers[0]
	} else if !slices.Contains(id.Containers, c) && !slices.Contains(id.InitContainers, c) {
		return "", "", status.Errorf(codes.InvalidArgument, "container %q is not in pod %s/%s (containers: %v)", c, id.Namespace, id.Name, id.Containers)
	}
	return id.UID, c, nil
}

// toStatus maps the runtime's sentinels to gRPC codes at this boundary.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, runtime.ErrPodNotFound), errors.Is(err, runtime.ErrContainerNotFound), errors.Is(err, runtime.ErrNoPreviousInstance):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, runtime.ErrNotRunning), errors.Is(err, runtime.ErrNoStdin):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, fmt.Sprint(err))
}
