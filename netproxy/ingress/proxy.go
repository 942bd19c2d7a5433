package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"
)

// ErrNoEndpoints means the backend a request routed to has no ready
// endpoint (answered 503).
var ErrNoEndpoints = errors.New("ingress: the backend Service has no ready endpoints")

// MaxAttempts bounds the endpoints one request tries.
const MaxAttempts = 3

// Proxy serves requests from the current routing table.
type Proxy struct {
	table     atomic.Pointer[Table]
	transport *http.Transport
	rp        *httputil.ReverseProxy
	pool      *upPool // the HTTP port's fast path (fast.go)
	log       *slog.Logger
}

type ctxKey struct{}

// routed is what the handler found, for the transport.
type routed struct {
	backend *Backend
	tls     bool
}

// NewProxy returns a proxy with an empty table (every request gets 404).
func NewProxy(log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{log: log, pool: newUpPool()}
	p.table.Store(Build(Sources{}))
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	p.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		// Many requests to a few endpoints: keep enough idle connections
		// per endpoint that a busy one is not redialled each request.
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 0, // long polls are the backend's business
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through as they are
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host // the backend sees the host the client asked for
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "backend.invalid" // replaced per attempt by the transport
		},
		Transport: retryTransport{base: p.transport},
		// 0: ReverseProxy flushes streaming responses (event streams,
		// unknown length) at once and buffers the rest.
		FlushInterval: 0,
		BufferPool:    newBufferPool(),
		ErrorHandler:  p.errorHandler,
	}
	return p
}

// SetTable swaps the routing table; requests in flight finish on the one
// they started with.
func (p *Proxy) SetTable(t *Table) { p.table.Store(t) }

// Table returns the current routing table.
func (p *Proxy) Table() *Table { return p.table.Load() }

// Close closes idle backend connections.
func (p *Proxy) Close() {
	p.transport.CloseIdleConnections()
	p.pool.close()
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := p.table.Load().Route(r.Host, r.URL.Path)
	if b == nil {
		http.Error(w, "404 no ingress rule matches this host and path", http.StatusNotFound)
		return
	}
	if len(b.Endpoints) == 0 {
		http.Error(w, fmt.Sprintf("503 backend %s has no ready endpoints", b.Name), http.StatusServiceUnavailable)
		return
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, routed{backend: b, tls: r.TLS != nil})
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client left
	}
	rt, _ := r.Context().Value(ctxKey{}).(routed)
	// The details (endpoint addresses) go to the log, not to whoever
	// reached the node.
	p.log.Debug("ingress: backend request failed", "backend", rt.backend.Name, "err", err)
	http.Error(w, fmt.Sprintf("502 backend %s did not answer", rt.backend.Name), http.StatusBadGateway)
}

// dialError marks a failure to connect: nothing reached the endpoint, so
// any request may be retried on another.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// retryTransport sends each attempt to the backend's next endpoint.
type retryTransport struct{ base *http.Transport }

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, ok := req.Context().Value(ctxKey{}).(routed)
	if !ok || rt.backend == nil || len(rt.backend.Endpoints) == 0 {
		return nil, ErrNoEndpoints
	}
	b := rt.backend
	start := b.start()
	attempts := min(MaxAttempts, len(b.Endpoints))
	// A bodiless idempotent request may also be retried when the
	// connection broke before any response (a pooled connection to an
	// endpoint that just went away).
	replayable := (req.Body == nil || req.Body == http.NoBody) &&
		(req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions) &&
		req.Header.Get("Upgrade") == ""
	if replayable {
		attempts = max(attempts, 2)
	}
	var err error
	for i := range attempts {
		ep := b.pick(start, i)
		u := *req.URL
		u.Host = ep.String()
		attempt := *req // the transport never sees one request twice
		attempt.URL = &u
		var resp *http.Response
		resp, err = t.base.RoundTrip(&attempt)
		if err == nil {
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		var de *dialError
		if !errors.As(err, &de) && !replayable {
			return nil, err
		}
	}
	return nil, err
}

// bufferPool reuses copy buffers across requests.
type bufferPool struct{ ch chan []byte }

func newBufferPool() *bufferPool { return &bufferPool{ch: make(chan []byte, 256)} }

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.ch:
		return buf
	default:
		return make([]byte, 32<<10)
	}
}

func (b *bufferPool) Put(buf []byte) {
	select {
	case b.ch <- buf:
	default:
	}
}
