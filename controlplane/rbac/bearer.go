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
}

// NewBearer returns the interceptors' owner; open are gRPC service names
// served without a token.
func NewBearer(tokens *Tokens, open ...string) *Bearer {
	b := &Bearer{tokens: tokens, open: map[string]bool{}}
	for _, s := range open {
		b.open[s] = true
	}
	return b
}

func (b *Bearer) authenticate(ctx context.Context, method string) (context.Context, error) {
	svc, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		if b.open[svc] {
			return ctx, nil
		}
		return nil, status.Errorf(codes.Unauthenticated,
			"%s needs a client certificate signed by the cluster CA, or a service account token (authorization: Bearer …); neither was presented", method)
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || len(vals) > 1 {
		return nil, status.Error(codes.Unauthenticated, `authorization metadata: want exactly one "Bearer <token>"`)
	}
	v, err := b.tokens.Verify(ctx, strings.TrimSpace(tok))
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "service account token refused: %v", err)
	}
	return api.WithIdentity(ctx, api.Identity{User: v.User, Groups: v.Groups}), nil
}

// Unary is the unary interceptor.
func (b *Bearer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := b.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream interceptor.
func (b *Bearer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := b.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &bearerStream{ServerStream: ss, ctx: ctx})
}

type bearerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *bearerStream) Context() context.Context { return s.ctx }
