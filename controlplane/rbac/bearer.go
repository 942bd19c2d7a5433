package rbac

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
)

// Bearer authenticates the calls on the certificate-less side of the API
// port by their service account token (gRPC metadata "authorization:
// Bearer <token>"), so a program in a pod can call the API. It sets the
// caller identity the API server then authorizes (RBAC). Calls without a
// token are refused, except the services listed in open (the join service,
// which a node calls before it has a certificate).
type Bearer struct {
	tokens *Tokens
	open   map[string]bool
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

// NewBearer returns the interceptors' owner. unary and stream run, in
// order, after a token authenticated a call (the API server's
// Interceptors); open are gRPC service names served without a token, and
// without those interceptors.
func NewBearer(tokens *Tokens, unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor, open ...string) *Bearer {
	b := &Bearer{tokens: tokens, open: map[string]bool{}, unary: unary, stream: stream}
	for _, s := range open {
		b.open[s] = true
	}
	return b
}

// authenticate returns the context with the token's identity; open is
// true for a call to an open service without a token.
func (b *Bearer) authenticate(ctx context.Context, method string) (_ context.Context, open bool, _ error) {
	svc, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		if b.open[svc] {
			return ctx, true, nil
		}
		return nil, false, status.Errorf(codes.Unauthenticated,
			"%s needs a client certificate signed by the cluster CA, or a service account token (authorization: Bearer …); neither was presented", method)
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || len(vals) > 1 {
		return nil, false, status.Error(codes.Unauthenticated, `authorization metadata: want exactly one "Bearer <token>"`)
	}
	v, err := b.tokens.Verify(ctx, strings.TrimSpace(tok))
	if err != nil {
		return nil, false, status.Errorf(codes.Unauthenticated, "service account token refused: %v", err)
	}
	return api.WithIdentity(ctx, api.Identity{User: v.User, Groups: v.Groups}), false, nil
}

// Unary is the unary interceptor.
func (b *Bearer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, open, err := b.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if open {
		return handler(ctx, req)
	}
	h := handler
	for i := len(b.unary) - 1; i >= 0; i-- {
		ic, next := b.unary[i], h
		h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
	}
	return h(ctx, req)
}

// Stream is the stream interceptor.
func (b *Bearer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, open, err := b.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if open {
		return handler(srv, ss)
	}
	h := handler
	for i := len(b.stream) - 1; i >= 0; i-- {
		ic, next := b.stream[i], h
		h = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
	}
	return h(srv, &bearerStream{ServerStream: ss, ctx: ctx})
}

type bearerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *bearerStream) Context() context.Context { return s.ctx }
