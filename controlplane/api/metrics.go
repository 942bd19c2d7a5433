package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/logkey"
)

// RequestIDHeader is the response header carrying the id the server's log
// lines about a request share (logkey.RequestID).
const RequestIDHeader = "x-request-id"

// metrics are the API server's: requests by method, kind and gRPC code,
// and latency by method. The kind label is a registered kind's name or
// "" (none, or one the registry does not know), so a client cannot grow
// the label's values.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	reg      *kinds.Registry
	log      *slog.Logger
}

func newMetrics(r prometheus.Registerer, reg *kinds.Registry, log *slog.Logger) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "api",
			Name: "requests_total", Help: "API requests by method, kind and gRPC code (streams counted when they end)."}, []string{"method", "kind", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "api",
			Name: "request_seconds", Help: "API unary request latency.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"method"}),
		reg: reg, log: log,
	}
	if r != nil {
		r.MustRegister(m.requests, m.latency)
	}
	return m
}

// kindOf is the registered kind a request names, or "".
func (m *metrics) kindOf(req any) string {
	var name string
	switch r := req.(type) {
	case interface{ GetKind() string }:
		name = r.GetKind()
	case interface{ GetObject() *apiv1.Object }:
		name = r.GetObject().GetKind()
	default:
		return ""
	}
	if m.reg == nil || name == "" {
		return ""
	}
	if k, ok := m.reg.ForKind(name); ok {
		return k.Name
	}
	if k, err := m.reg.Lookup(name); err == nil {
		return k.Name
	}
	return ""
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	id := newRequestID()
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	resp, err := handler(ctx, req)
	took := time.Since(start)
	kind := m.kindOf(req)
	code := status.Code(err)
	m.latency.WithLabelValues(info.FullMethod).Observe(took.Seconds())
	m.requests.WithLabelValues(info.FullMethod, kind, code.String()).Inc()
	m.logRequest(ctx, id, info.FullMethod, kind, req, code.String(), took, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	id := newRequestID()
	_ = ss.SetHeader(metadata.Pairs(RequestIDHeader, id))
	ks := &kindStream{ServerStream: ss, m: m}
	err := handler(srv, ks)
	code := status.Code(err).String()
	m.requests.WithLabelValues(info.FullMethod, ks.kind, code).Inc()
	m.logRequest(ss.Context(), id, info.FullMethod, ks.kind, ks.first, code, time.Since(start), err)
	return err
}

// logRequest writes one debug line per request (a warning for a server
// fault) with the shared keys.
func (m *metrics) logRequest(ctx context.Context, id, method, kind string, req any, code string, took time.Duration, err error) {
	level := slog.LevelDebug
	switch status.Code(err) {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelWarn
	}
	if m.log == nil || !m.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{slog.String(logkey.RequestID, id), slog.String("method", method), slog.String("code", code), slog.Duration("took", took)}
	if kind != "" {
		ns, name := requestNames(req)
		attrs = append(attrs, logkey.ObjectAttrs(kind, ns, name)...)
	}
	if err != nil {
		attrs = append(attrs, slog.String(logkey.Err, err.Error()))
	}
	m.log.Log(ctx, level, "request", attrs...)
}

// requestNames are the namespace and name a request is about, when it
// names one.
func requestNames(req any) (ns, name string) {
	if r, ok := req.(interface{ GetNamespace() string }); ok {
		ns = r.GetNamespace()
	}
	if r, ok := req.(interface{ GetName() string }); ok {
		name = r.GetName()
	}
	return ns, name
}

// kindStream notes the kind of a stream's first request (a watch's).
type kindStream struct {
	grpc.ServerStream
	m     *metrics
	kind  string
	first any
}

func (s *kindStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil && s.first == nil {
		s.first, s.kind = msg, s.m.kindOf(msg)
	}
	return err
}
