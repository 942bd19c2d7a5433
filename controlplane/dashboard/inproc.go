package dashboard

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/skiffhq/skiff/controlplane/api"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// Caller is who a dashboard session speaks for: the subject of the client
// certificate that minted its login token.
type Caller struct {
	User   string
	Groups []string
}

// Metadata keys carrying the caller on the in-memory connection only.
const (
	mdUser  = "x-skiff-dashboard-user"
	mdGroup = "x-skiff-dashboard-group"
)

// asCaller makes calls on ctx speak for c (InProcess reads it back).
func asCaller(ctx context.Context, c Caller) context.Context {
	kv := []string{mdUser, c.User}
	for _, g := range c.Groups {
		kv = append(kv, mdGroup, g)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// InProcess is the node's API server served on an in-memory listener for
// the dashboard: the same handlers and interceptors as the API port, with
// the identity taken from the dashboard's metadata instead of a client
// certificate. Nothing outside this process can dial it.
type InProcess struct {
	lis  *bufconn.Listener
	srv  *grpc.Server
	conn *grpc.ClientConn
	API  apiv1.APIClient
	// Streams is the API server's relay of pod streams (logs) to the nodes.
	Streams streamv1.PodStreamsClient
}

// NewInProcess registers srv's API on a new in-memory gRPC server. extra
// server options (the node's audit interceptors) run after the API's own.
func NewInProcess(srv *api.Server, extra ...grpc.ServerOption) (*InProcess, error) {
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(unaryCaller), grpc.ChainStreamInterceptor(streamCaller)}
	opts = append(opts, srv.ServerOptions()...)
	opts = append(opts, extra...)
	p := &InProcess{lis: bufconn.Listen(1 << 20), srv: grpc.NewServer(opts...)}
	srv.Register(p.srv)
	conn, err := grpc.NewClient("passthrough:///dashboard-in-process",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return p.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("in-process API connection: %w", err)
	}
	p.conn, p.API, p.Streams = conn, apiv1.NewAPIClient(conn), streamv1.NewPodStreamsClient(conn)
	return p, nil
}

// Serve serves until Close.
func (p *InProcess) Serve() error {
	if err := p.srv.Serve(p.lis); err != nil && err != grpc.ErrServerStopped {
		return fmt.Errorf("in-process API: %w", err)
	}
	return nil
}

// Close stops the server and the connection (open watches end).
func (p *InProcess) Close() {
	_ = p.conn.Close()
	p.srv.Stop()
}

func callerFromMetadata(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	users := md.Get(mdUser)
	if len(users) != 1 || users[0] == "" {
		return nil, status.Error(codes.Unauthenticated, "dashboard call without a caller")
	}
	return api.WithIdentity(ctx, api.Identity{User: users[0], Groups: md.Get(mdGroup)}), nil
}

func unaryCaller(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := callerFromMetadata(ctx)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func streamCaller(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := callerFromMetadata(ss.Context())
	if err != nil {
		return err
	}
	return h(srv, &callerStream{ServerStream: ss, ctx: ctx})
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }
