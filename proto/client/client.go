package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Options configure a Client.
type Options struct {
	// Servers are API addresses (host:port) of the control nodes.
	Servers []string
	// TLS is the mutual-TLS client config (CA and client certificate).
	TLS *tls.Config
	// Namespace is the default namespace of namespaced requests.
	Namespace string
	// MaxAttempts bounds tries of one call across servers on Unavailable.
	MaxAttempts int
	// RetryBackoff is the first pause after every server was tried; it
	// doubles up to MaxBackoff.
	RetryBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one connection attempt to a server.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// DefaultOptions: 6 attempts with backoff from 100 ms — long enough to ride
// out a leader election (about a second), short enough to fail fast when a
// cluster is down.
func DefaultOptions() Options {
	return Options{Namespace: "default", MaxAttempts: 6, RetryBackoff: 100 * time.Millisecond,
		MaxBackoff: 2 * time.Second, DialTimeout: 3 * time.Second, Logger: slog.Default()}
}

// Client talks to the cluster API through any of the control nodes.
type Client struct {
	opts    Options
	conns   []*grpc.ClientConn
	apis    []apiv1.APIClient
	current atomic.Uint64
	api     *failoverAPI
}

// New connects (lazily) to every server in opts.
func New(opts Options) (*Client, error) {
	def := DefaultOptions()
	if len(opts.Servers) == 0 {
		return nil, fmt.Errorf("%w: no API server address", ErrConfig)
	}
	if opts.TLS == nil {
		return nil, fmt.Errorf("%w: TLS config is required (the API speaks mutual TLS only)", ErrConfig)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = def.MaxAttempts
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = def.RetryBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = def.MaxBackoff
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = def.DialTimeout
	}
	if opts.Namespace == "" {
		opts.Namespace = def.Namespace
	}
	if opts.Logger == nil {
		opts.Logger = def.Logger
	}
	c := &Client{opts: opts}
	for _, addr := range opts.Servers {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(credentials.NewTLS(opts.TLS.Clone())),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond,
				Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}, MinConnectTimeout: opts.DialTimeout}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: server %q: %w", ErrConfig, addr, err)
		}
		c.conns = append(c.conns, conn)
		c.apis = append(c.apis, apiv1.NewAPIClient(conn))
	}
	c.api = &failoverAPI{c: c}
	return c, nil
}

// NewFromConfig builds a client from a config file's contents.
func NewFromConfig(cfg *Config) (*Client, error) {
	tc, err := cfg.TLS()
	if err != nil {
		return nil, err
	}
	o := DefaultOptions()
	o.Servers, o.TLS = cfg.Servers, tc
	if cfg.Namespace != "" {
		o.Namespace = cfg.Namespace
	}
	return New(o)
}

// Close closes every connection.
func (c *Client) Close() error {
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	return errors.Join(errs...)
}

// Namespace is the client's default namespace.
func (c *Client) Namespace() string { return c.opts.Namespace }

// API returns the raw gRPC API with failover: each call goes to the
// current server and, on Unavailable, to the next one, with backoff once
// every server was tried. Watch fails over only while the stream is being
// established.
func (c *Client) API() apiv1.APIClient { return c.api }

// UnavailableError: no server could serve the call.
type UnavailableError struct {
	Servers []string
	Last    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("API server unavailable (tried %s): %s", strings.Join(e.Servers, ", "), Reason(e.Last))
}

// GRPCStatus lets status.Code see Unavailable.
func (e *UnavailableError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

func (e *UnavailableError) Unwrap() error { return e.Last }

// Reason shortens a gRPC error to its cause for one-line messages:
// "connection refused" instead of the transport's nested description.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	if i := strings.LastIndex(msg, "Error while dialing: "); i >= 0 {
		msg = strings.Trim(msg[i+len("Error while dialing: "):], `"`)
	}
	if i := strings.Index(msg, "desc = "); i >= 0 {
		msg = strings.Trim(msg[i+len("desc = "):], `"`)
	}
	return strings.TrimSpace(msg)
}

// do runs call against servers until one answers with something other
// than Unavailable, rotating through them.
func (c *Client) do(ctx context.Context, call func(api apiv1.APIClient, addr string) error) error {
	n := uint64(len(c.apis))
	pause := c.opts.RetryBackoff
	var last error
	tried := map[string]bool{}
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		i := c.current.Load()
		addr := c.opts.Servers[i%n]
		err := call(c.apis[i%n], addr)
		if status.Code(err) != codes.Unavailable {
			return err
		}
		last = err
		tried[addr] = true
		c.current.CompareAndSwap(i, i+1)
		if ctx.Err() != nil {
			break
		}
		if uint64(attempt+1)%n == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			pause = min(2*pause, c.opts.MaxBackoff)
		}
	}
	if ctx.Err() != nil && last == nil {
		return ctx.Err()
	}
	var servers []string
	for _, s := range c.opts.Servers {
		if tried[s] {
			servers = append(servers, s)
		}
	}
	return &UnavailableError{Servers: servers, Last: last}
}

// failoverAPI implements apiv1.APIClient over Client.do.
type failoverAPI struct{ c *Client }

func unary[Req, Resp any](ctx context.Context, c *Client, req Req, opts []grpc.CallOption,
	m func(apiv1.APIClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	var resp Resp
	err := c.do(ctx, func(api apiv1.APIClient, _ string) error {
		var err error
		resp, err = m(api, ctx, req, opts...)
		return err
	})
	return resp, err
}

func (f *failoverAPI) Create(ctx context.Context, in *apiv1.CreateRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Create)
}
func (f *failoverAPI) Get(ctx context.Context, in *apiv1.GetRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Get)
}
func (f *failoverAPI) List(ctx context.Context, in *apiv1.ListRequest, opts ...grpc.CallOption) (*apiv1.List, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.List)
}
func (f *failoverAPI) Update(ctx context.Context, in *apiv1.UpdateRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Update)
}
func (f *failoverAPI) UpdateStatus(ctx context.Context, in *apiv1.UpdateRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.UpdateStatus)
}
func (f *failoverAPI) Patch(ctx context.Context, in *apiv1.PatchRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Patch)
}
func (f *failoverAPI) Delete(ctx context.Context, in *apiv1.DeleteRequest, opts ...grpc.CallOption) (*apiv1.DeleteResponse, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Delete)
}
func (f *failoverAPI) Apply(ctx context.Context, in *apiv1.ApplyRequest, opts ...grpc.CallOption) (*apiv1.ApplyResponse, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Apply)
}
func (f *failoverAPI) CreateMany(ctx context.Context, in *apiv1.CreateManyRequest, opts ...grpc.CallOption) (*apiv1.CreateManyResponse, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.CreateMany)
}
func (f *failoverAPI) Bind(ctx context.Context, in *apiv1.BindRequest, opts ...grpc.CallOption) (*apiv1.BindResponse, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Bind)
}
func (f *failoverAPI) Version(ctx context.Context, in *apiv1.VersionRequest, opts ...grpc.CallOption) (*apiv1.VersionResponse, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Version)
}

// Watch opens the stream on the first server that accepts it: it waits for
// the response headers, which the server sends once the watch is in place.
func (f *failoverAPI) Watch(ctx context.Context, in *apiv1.WatchRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[apiv1.WatchResponse], error) {
	var stream grpc.ServerStreamingClient[apiv1.WatchResponse]
	err := f.c.do(ctx, func(api apiv1.APIClient, _ string) error {
		s, err := api.Watch(ctx, in, opts...)
		if err != nil {
			return err
		}
		md, err := s.Header()
		if err != nil {
			return err
		}
		if len(md.Get(watchReadyHeader)) == 0 {
			// Trailers only: the watch failed before it started.
			if _, err := s.Recv(); err != nil {
				return err
			}
			return status.Error(codes.Internal, "watch stream started without the ready header")
		}
		stream = s
		return nil
	})
	return stream, err
}

var _ apiv1.APIClient = (*failoverAPI)(nil)

// watchReadyHeader mirrors the API server's WatchReadyHeader.
const watchReadyHeader = "skiff-watch-ready"
