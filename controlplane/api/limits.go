package api

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Limits bound what one identity (the subject of its client certificate:
// user and groups) may hold open on one API server, so that one client —
// a viewer opening 50,000 watches grew a control node from 268 MB to
// 1.03 GB — cannot take the memory or the goroutines every other client
// needs. Each identity has its own count: a client at its cap is refused
// with ResourceExhausted while every other identity is served as before.
//
// Who gets what, and why:
//   - control nodes (ExemptGroups; the node sets its control group): no
//     cap. They are the cluster: the leader's scheduler and controllers
//     hold dozens of informer watches and thousands of calls a second
//     through one identity, and a control identity holds the CA key
//     anyway, so capping it would protect nothing and could stall the
//     cluster.
//   - worker nodes: the default. An agent holds a handful of watches
//     (its pods, services, endpoints, nodes) and few calls at once.
//   - admins, viewers: the default, which is generous for people and
//     scripts; a runaway script then hurts its own identity only.
//
// What is not limited here: the size of one request (gRPC's receive limit,
// 4 MiB by default, refuses larger messages before they are decoded) and
// how much a slow watcher buffers (bounded per watch; see Watch).
type Limits struct {
	// WatchesPerIdentity caps concurrent Watch streams of one identity.
	// 0 means the default; negative means no cap.
	WatchesPerIdentity int
	// StreamsPerIdentity caps concurrent calls of one identity: every
	// gRPC call is an HTTP/2 stream, whether a unary call in flight, a
	// watch or another streaming call. 0 means the default; negative
	// means no cap.
	StreamsPerIdentity int
	// ExemptGroups: identities in one of these groups have no cap.
	ExemptGroups []string
}

// Default limits: generous for any one client, small against what the
// server can hold (a watch costs ~15 KB of goroutines and buffers while
// idle, so 500 cost ~8 MB).
const (
	DefaultWatchesPerIdentity = 500
	DefaultStreamsPerIdentity = 2000
)

// How to raise the limits, for the refusal's message.
const (
	watchLimitHint  = "raise the limit: `ctl init`/`ctl join --control` --max-watches-per-identity N on every control node (api.Limits.WatchesPerIdentity)"
	streamLimitHint = "raise the limit: `ctl init`/`ctl join --control` --max-streams-per-identity N on every control node (api.Limits.StreamsPerIdentity)"
)

func (l Limits) withDefaults() Limits {
	if l.WatchesPerIdentity == 0 {
		l.WatchesPerIdentity = DefaultWatchesPerIdentity
	}
	if l.StreamsPerIdentity == 0 {
		l.StreamsPerIdentity = DefaultStreamsPerIdentity
	}
	return l
}

// limiter counts what each identity holds open.
type limiter struct {
	limits Limits
	mu     sync.Mutex
	held   map[string]heldByIdentity // by subjectKey; removed at zero

	watches, streams prometheus.Gauge
	refusals         *prometheus.CounterVec
}

type heldByIdentity struct{ watches, streams int }

func newLimiter(l Limits, reg prometheus.Registerer) *limiter {
	lim := &limiter{limits: l.withDefaults(), held: map[string]heldByIdentity{},
		watches: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: "api",
			Name: "watches_open", Help: "Watch streams open on this API server."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: "api",
			Name: "streams_open", Help: "Calls in flight on this API server (unary and streaming, watches included)."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "api",
			Name: "limit_refusals_total", Help: "Calls refused because their identity was at a per-identity limit, by limit."}, []string{"limit"}),
	}
	if reg != nil {
		reg.MustRegister(lim.watches, lim.streams, lim.refusals)
	}
	return lim
}

// subjectKey is an identity's subject: the same user name in another
// group is another identity.
func subjectKey(id Identity) string {
	return id.User + "\x00" + strings.Join(id.Groups, "\x00")
}

func (l *limiter) exempt(id Identity) bool {
	for _, g := range id.Groups {
		if slices.Contains(l.limits.ExemptGroups, g) {
			return true
		}
	}
	return false
}

// acquire takes a stream slot, and a watch slot too when watch is set, for
// the identity in ctx. It returns the release func, to call exactly once,
// or the refusal.
func (l *limiter) acquire(ctx context.Context, watch bool) (func(), error) {
	id, ok := IdentityFrom(ctx)
	if !ok || l.exempt(id) {
		return func() {}, nil
	}
	key := subjectKey(id)
	l.mu.Lock()
	h := l.held[key]
	if limit := l.limits.StreamsPerIdentity; limit > 0 && h.streams >= limit {
		l.mu.Unlock()
		l.refusals.WithLabelValues("streams").Inc()
		return nil, status.Errorf(codes.ResourceExhausted,
			"too many concurrent calls: %q has %d in flight on this API server and the limit per identity is %d; wait for some to finish or close watches, or %s",
			id.User, h.streams, limit, streamLimitHint)
	}
	if limit := l.limits.WatchesPerIdentity; watch && limit > 0 && h.watches >= limit {
		l.mu.Unlock()
		l.refusals.WithLabelValues("watches").Inc()
		return nil, status.Errorf(codes.ResourceExhausted,
			"too many concurrent watches: %q has %d open on this API server and the limit per identity is %d; close some (one watch per kind, for all namespaces if need be, is enough), or %s",
			id.User, h.watches, limit, watchLimitHint)
	}
	h.streams++
	if watch {
		h.watches++
	}
	l.held[key] = h
	l.mu.Unlock()
	l.streams.Inc()
	if watch {
		l.watches.Inc()
	}
	return func() { l.release(key, watch) }, nil
}

func (l *limiter) release(key string, watch bool) {
	l.mu.Lock()
	h := l.held[key]
	h.streams--
	if watch {
		h.watches--
	}
	if h.streams <= 0 && h.watches <= 0 {
		delete(l.held, key) // only identities with calls in flight stay
	} else {
		l.held[key] = h
	}
	l.mu.Unlock()
	l.streams.Dec()
	if watch {
		l.watches.Dec()
	}
}

// heldBy reports what the identity holds (for tests and debugging).
func (l *limiter) heldBy(id Identity) (watches, streams int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[subjectKey(id)]
	return h.watches, h.streams
}

// The interceptors run after the identity ones (they need the identity)
// and count every call of the server, whichever service it is for.
func (l *limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	release, err := l.acquire(ctx, false)
	if err != nil {
		return nil, err
	}
	defer release()
	return handler(ctx, req)
}

func (l *limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	release, err := l.acquire(ss.Context(), info.FullMethod == apiv1.API_Watch_FullMethodName)
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, ss)
}

// Held reports how many watches and calls the identity with this user
// name and groups has open on this server.
func (s *Server) Held(user string, groups ...string) (watches, calls int) {
	return s.limits.heldBy(Identity{User: user, Groups: groups})
}
