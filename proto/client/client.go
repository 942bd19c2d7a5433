package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
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
	// DialTimeout bounds one connection attempt to a server: a call on a
	// server that does not complete the handshake in time (down, frozen,
	// blackholed) fails unsent and goes to the next server.
	DialTimeout time.Duration
	// ReadAttemptTimeout bounds one attempt of a read (Get, List, Version,
	// opening a Watch) on one server; a server silent that long is left
	// for the next. It doubles after each round over all servers, so a
	// read that is merely slow still completes. Writes have no per-attempt
	// deadline: cutting one off after it was sent would leave its outcome
	// unknown.
	ReadAttemptTimeout time.Duration
	// KeepaliveTime is how often an idle connection is pinged (gRPC's floor
	// is 10 s); KeepaliveTimeout how long a ping may go unanswered before
	// the connection is closed and calls on it fail over.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// LearnInterval is how often, at most, the client asks a server for
	// the current control nodes (after a successful call); negative never.
	LearnInterval time.Duration
	Logger        *slog.Logger
	// TokenFile, when set, is sent as "authorization: Bearer <its
	// content>" on every call, read afresh each time (a service account
	// token the node rotates).
	TokenFile string
}

// DefaultOptions: 6 attempts with backoff from 100 ms — long enough to ride
// out a leader election (about a second), short enough to fail fast when a
// cluster is down; a silent server costs a read about a second.
func DefaultOptions() Options {
	return Options{Namespace: "default", MaxAttempts: 6, RetryBackoff: 100 * time.Millisecond,
		MaxBackoff: 2 * time.Second, DialTimeout: time.Second, ReadAttemptTimeout: time.Second,
		KeepaliveTime: 10 * time.Second, KeepaliveTimeout: 2 * time.Second,
		LearnInterval: 30 * time.Second, Logger: slog.Default()}
}

// Client talks to the cluster API through any of the control nodes. It
// starts with the servers it was given and learns the others: after a call
// succeeds (and then at most every LearnInterval) it asks that server for
// the current control nodes (Version's api_servers) and adds the ones it
// did not know, so that it fails over to control nodes that joined after
// its config was written.
type Client struct {
	opts    Options
	servers atomic.Pointer[[]*server] // replaced (never changed) when one is added
	current atomic.Uint64
	api     *failoverAPI

	mu        sync.Mutex // guards closed, learning, learnedAt, appends to servers
	closed    bool
	learning  bool
	learnedAt time.Time
	learners  sync.WaitGroup
}

// server is one API address and its (lazily connecting) connection.
type server struct {
	addr string
	conn *grpc.ClientConn
	api  apiv1.APIClient
}

// New connects (lazily) to every server in opts. Addresses without a port
// get DefaultAPIPort.
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
	if opts.ReadAttemptTimeout <= 0 {
		opts.ReadAttemptTimeout = def.ReadAttemptTimeout
	}
	if opts.KeepaliveTime <= 0 {
		opts.KeepaliveTime = def.KeepaliveTime
	}
	if opts.KeepaliveTimeout <= 0 {
		opts.KeepaliveTimeout = def.KeepaliveTimeout
	}
	if opts.LearnInterval == 0 {
		opts.LearnInterval = def.LearnInterval
	}
	if opts.Namespace == "" {
		opts.Namespace = def.Namespace
	}
	if opts.Logger == nil {
		opts.Logger = def.Logger
	}
	c := &Client{opts: opts}
	var servers []*server
	for _, addr := range withDefaultPorts(opts.Servers) {
		if slices.ContainsFunc(servers, func(s *server) bool { return s.addr == addr }) {
			continue
		}
		s, err := c.dial(addr)
		if err != nil {
			for _, s := range servers {
				s.conn.Close()
			}
			return nil, err
		}
		servers = append(servers, s)
	}
	c.servers.Store(&servers)
	c.api = &failoverAPI{c: c}
	return c, nil
}

// streamWindow is the HTTP/2 flow-control window of each stream from a
// server (see dial).
const streamWindow = 4 << 20

// readBuffer is how much of a connection's input one read takes: gRPC's
// default (32 KiB) costs a system call per two 16 KiB frames of bulk
// output.
const readBuffer = 256 << 10

func (c *Client) dial(addr string) (*server, error) {
	var extra []grpc.DialOption
	if c.opts.TokenFile != "" {
		extra = append(extra, grpc.WithPerRPCCredentials(tokenFileCreds(c.opts.TokenFile)))
	}
	conn, err := grpc.NewClient(addr, append(extra,
		grpc.WithTransportCredentials(credentials.NewTLS(c.opts.TLS.Clone())),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond,
			Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}, MinConnectTimeout: c.opts.DialTimeout}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: c.opts.KeepaliveTime, Timeout: c.opts.KeepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
		// Fixed windows instead of gRPC's estimate of the path (which
		// starts at 64 KiB and grows by pinging): a stream of bulk output
		// (logs -f, cp from a pod) runs at full speed from its first
		// message, and what a server may send ahead of a slow reader stays
		// bounded (per stream and per connection). 4 MiB in flight per
		// stream still fills a 50 ms path at 80 MB/s.
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(4*streamWindow),
		grpc.WithReadBufferSize(readBuffer))...)
	if err != nil {
		return nil, fmt.Errorf("%w: server %q: %w", ErrConfig, addr, err)
	}
	return &server{addr: addr, conn: conn, api: apiv1.NewAPIClient(conn)}, nil
}

// Servers lists the API addresses the client fails over between: the ones
// it was given, then the ones it learned.
func (c *Client) Servers() []string {
	ss := *c.servers.Load()
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.addr
	}
	return out
}

// maybeLearn starts learning the control nodes from s (which just answered)
// unless that happened less than LearnInterval ago or is under way.
func (c *Client) maybeLearn(s *server) {
	if c.opts.LearnInterval < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.learning || (!c.learnedAt.IsZero() && time.Since(c.learnedAt) < c.opts.LearnInterval) {
		return
	}
	c.learning = true
	c.learners.Add(1)
	go func() {
		defer c.learners.Done()
		err := c.learn(s)
		c.mu.Lock()
		c.learning = false
		if err == nil {
			c.learnedAt = time.Now()
		}
		c.mu.Unlock()
		if err != nil {
			// Not fatal: the client keeps the servers it has, and tries
			// again after the next successful call.
			c.opts.Logger.Debug("learning the control nodes' API addresses", "server", s.addr, "err", err)
		}
	}()
}

// learn asks s for the current control nodes and adds those not known.
func (c *Client) learn(s *server) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.DialTimeout)
	defer cancel()
	resp, err := s.api.Version(ctx, &apiv1.VersionRequest{})
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	cur := *c.servers.Load()
	next := cur
	for _, addr := range resp.GetApiServers() {
		addr = WithDefaultPort(addr)
		if addr == "" || slices.ContainsFunc(next, func(s *server) bool { return s.addr == addr }) {
			continue
		}
		ns, err := c.dial(addr)
		if err != nil {
			return err
		}
		next = append(slices.Clip(next), ns)
		c.opts.Logger.Debug("learned a control node", "server", addr)
	}
	if len(next) != len(cur) {
		c.servers.Store(&next)
	}
	return nil
}

// NewFromConfig builds a client from a config file's contents.
func NewFromConfig(cfg *Config) (*Client, error) {
	tc, err := cfg.TLS()
	if err != nil {
		return nil, err
	}
	o := DefaultOptions()
	o.Servers, o.TLS = cfg.Servers, tc
	if o.TokenFile = cfg.tokenPath(); o.TokenFile != "" {
		// A token client reaches the API through the address it was given
		// (in a pod, the kubernetes Service, which already spreads over
		// the control nodes); their own addresses may not be reachable.
		o.LearnInterval = -1
	}
	if cfg.Namespace != "" {
		o.Namespace = cfg.Namespace
	}
	return New(o)
}

// Close closes every connection (after a learning call under way ends).
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.learners.Wait()
	var errs []error
	for _, s := range *c.servers.Load() {
		errs = append(errs, s.conn.Close())
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
// than Unavailable, rotating through them. A write (write=true) is sent
// again only when it provably was not applied: it never left the client
// (no connection: gRPC reports no peer), or the server marked its answer
// not applied. Otherwise its failure is an OutcomeUnknownError: a retry of
// an applied create would say AlreadyExists, of an applied compare-and-set
// Conflict, and the caller would take its own success for a failure.
//
// A read attempt has a deadline of its own (ReadAttemptTimeout, doubled
// after each round over the servers): a server that stays silent past it
// is left for the next one, as if it had answered Unavailable.
func (c *Client) do(ctx context.Context, write bool, call func(ctx context.Context, api apiv1.APIClient, addr string, sent *peer.Peer) error) error {
	pause := c.opts.RetryBackoff
	attemptTimeout := c.opts.ReadAttemptTimeout
	var last error
	var tried, noQuorum []string
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		ss := *c.servers.Load() // learning may add servers between attempts
		n := uint64(len(ss))
		i := c.current.Load()
		s := ss[i%n]
		var p peer.Peer
		actx, cancel := ctx, context.CancelFunc(func() {})
		if !write {
			actx, cancel = context.WithTimeout(ctx, attemptTimeout)
		}
		err := call(actx, s.api, s.addr, &p)
		if err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = status.Errorf(codes.Unavailable, "server %s did not answer within %s", s.addr, attemptTimeout)
		}
		cancel()
		switch classify(err, write, p.Addr != nil) {
		case final:
			if err == nil {
				c.maybeLearn(s)
			}
			return err
		case unknown:
			return &OutcomeUnknownError{Server: s.addr, Cause: err}
		}
		last = err
		if !slices.Contains(tried, s.addr) {
			tried = append(tried, s.addr)
		}
		if quorumLost(err) && !slices.Contains(noQuorum, s.addr) {
			// Every server says it cannot elect a leader: say so now
			// rather than after the backoff rounds.
			if noQuorum = append(noQuorum, s.addr); len(noQuorum) == len(ss) {
				break
			}
		}
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
			attemptTimeout *= 2
		}
	}
	if ctx.Err() != nil && last == nil {
		return ctx.Err()
	}
	return &UnavailableError{Servers: tried, Last: last}
}

// failoverAPI implements apiv1.APIClient over Client.do.
type failoverAPI struct{ c *Client }

// unary runs a read through do; unaryWrite a write (see do).
func unary[Req, Resp any](ctx context.Context, c *Client, req Req, opts []grpc.CallOption,
	m func(apiv1.APIClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	return call(ctx, c, false, req, opts, m)
}

func unaryWrite[Req, Resp any](ctx context.Context, c *Client, req Req, opts []grpc.CallOption,
	m func(apiv1.APIClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	return call(ctx, c, true, req, opts, m)
}

func call[Req, Resp any](ctx context.Context, c *Client, write bool, req Req, opts []grpc.CallOption,
	m func(apiv1.APIClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	var resp Resp
	err := c.do(ctx, write, func(actx context.Context, api apiv1.APIClient, _ string, sent *peer.Peer) error {
		var err error
		resp, err = m(api, actx, req, append(opts[:len(opts):len(opts)], grpc.Peer(sent))...)
		return err
	})
	return resp, err
}

func (f *failoverAPI) Create(ctx context.Context, in *apiv1.CreateRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.Create)
}
func (f *failoverAPI) Get(ctx context.Context, in *apiv1.GetRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Get)
}
func (f *failoverAPI) List(ctx context.Context, in *apiv1.ListRequest, opts ...grpc.CallOption) (*apiv1.List, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.List)
}
func (f *failoverAPI) Update(ctx context.Context, in *apiv1.UpdateRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.Update)
}
func (f *failoverAPI) UpdateStatus(ctx context.Context, in *apiv1.UpdateRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.UpdateStatus)
}
func (f *failoverAPI) Patch(ctx context.Context, in *apiv1.PatchRequest, opts ...grpc.CallOption) (*apiv1.Object, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.Patch)
}
func (f *failoverAPI) Delete(ctx context.Context, in *apiv1.DeleteRequest, opts ...grpc.CallOption) (*apiv1.DeleteResponse, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.Delete)
}

// Apply states the whole desired object: sending it again after it was
// applied changes nothing, so it is retried as a read is, and also when
// the store could not tell whether it committed (Unknown: leadership lost
// while it was in flight). Such a retry of an apply that did commit
// answers "unchanged".
func (f *failoverAPI) Apply(ctx context.Context, in *apiv1.ApplyRequest, opts ...grpc.CallOption) (*apiv1.ApplyResponse, error) {
	for attempt := 1; ; attempt++ {
		resp, err := unary(ctx, f.c, in, opts, apiv1.APIClient.Apply)
		if status.Code(err) != codes.Unknown || attempt >= f.c.opts.MaxAttempts || ctx.Err() != nil {
			return resp, err
		}
	}
}
func (f *failoverAPI) CreateMany(ctx context.Context, in *apiv1.CreateManyRequest, opts ...grpc.CallOption) (*apiv1.CreateManyResponse, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.CreateMany)
}
func (f *failoverAPI) Bind(ctx context.Context, in *apiv1.BindRequest, opts ...grpc.CallOption) (*apiv1.BindResponse, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.Bind)
}
func (f *failoverAPI) Version(ctx context.Context, in *apiv1.VersionRequest, opts ...grpc.CallOption) (*apiv1.VersionResponse, error) {
	return unary(ctx, f.c, in, opts, apiv1.APIClient.Version)
}

// Watch opens the stream on the first server that accepts it: it waits for
// the response headers, which the server sends once the watch is in place.
func (f *failoverAPI) Watch(ctx context.Context, in *apiv1.WatchRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[apiv1.WatchResponse], error) {
	var stream grpc.ServerStreamingClient[apiv1.WatchResponse]
	err := f.c.do(ctx, false, func(actx context.Context, api apiv1.APIClient, _ string, _ *peer.Peer) error {
		// The stream lives on the caller's context; the attempt's deadline
		// bounds only the wait for it to open.
		sctx, cancel := context.WithCancel(ctx)
		opening := context.AfterFunc(actx, cancel)
		s, err := api.Watch(sctx, in, opts...)
		if err != nil {
			cancel()
			return err
		}
		md, err := s.Header()
		if !opening() { // the attempt ended first: the stream is cancelled
			cancel()
			if err == nil {
				err = actx.Err()
			}
			return err
		}
		if err != nil {
			cancel()
			return err
		}
		if len(md.Get(watchReadyHeader)) == 0 {
			// Trailers only: the watch failed before it started.
			defer cancel()
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
