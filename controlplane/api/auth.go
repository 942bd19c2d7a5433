package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// Identity is who is calling, taken from the verified mTLS client
// certificate: the subject's common name is the user, its organizations the
// groups (the Kubernetes convention).
type Identity struct {
	User   string
	Groups []string
	// Cert is the verified leaf certificate; nil for in-process calls.
	Cert *x509.Certificate
}

// Attributes describe one request for authorization.
type Attributes struct {
	Identity Identity
	// Verb is get, list, watch, create, update, patch or delete.
	Verb string
	// Kind is the kind name ("Pod"); Subresource is "status" for status writes.
	Kind        string
	Subresource string
	// Resource and Group name a resource that is not a kind
	// ("serviceaccounts" for the token subresource); empty: Kind's.
	Resource, Group string
	Namespace       string
	Name            string
	// LabelSelector is a list's or watch's label selector as sent: the
	// answer holds only what it selects (a node lists only the
	// PersistentVolumes labelled with its name).
	LabelSelector string
	// Stored is the object as stored, set for writes the authorizer asked
	// to see it for (StoredNeeder); nil otherwise.
	Stored proto.Message
}

// StoredNeeder is implemented by authorizers that decide some writes on
// the stored object (a node may update only the status of pods bound to
// it): for those the server reads the object before authorizing.
type StoredNeeder interface {
	NeedsStored(a Attributes) bool
}

// Authorizer decides whether a request may proceed. It returns nil to allow,
// or an error saying why not (wrapped into ErrForbidden).
type Authorizer interface {
	Authorize(ctx context.Context, a Attributes) error
}

// AllowAll is the authorizer used until roles exist: every authenticated
// caller may do everything.
type AllowAll struct{}

// Authorize allows.
func (AllowAll) Authorize(context.Context, Attributes) error { return nil }

type identityKey struct{}

// IdentityFrom returns the caller identity the server attached to ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// WithIdentity attaches an identity to ctx (for in-process callers and tests).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// peerIdentity reads the verified client certificate of a gRPC peer.
func peerIdentity(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, fmt.Errorf("%w: no transport credentials on the connection", ErrForbidden)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, fmt.Errorf("%w: connection is not TLS", ErrForbidden)
	}
	chains := ti.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: no verified client certificate", ErrForbidden)
	}
	leaf := chains[0][0]
	return Identity{User: leaf.Subject.CommonName, Groups: append([]string(nil), leaf.Subject.Organization...), Cert: leaf}, nil
}

// authn interceptors attach the identity of every gRPC caller to its
// context. Health and reflection calls pass through them too; a connection
// without a verified certificate never gets this far with the server's TLS
// config, but an in-process server without TLS is refused here.
func unaryIdentity(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, ok := IdentityFrom(ctx); !ok {
		id, err := peerIdentity(ctx)
		if err != nil {
			return nil, toStatus(err)
		}
		ctx = WithIdentity(ctx, id)
	}
	return handler(ctx, req)
}

func streamIdentity(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if _, ok := IdentityFrom(ctx); !ok {
		id, err := peerIdentity(ctx)
		if err != nil {
			return toStatus(err)
		}
		ss = &identityStream{ServerStream: ss, ctx: WithIdentity(ctx, id)}
	}
	return handler(srv, ss)
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

func (s *Server) authorize(ctx context.Context, verb string, kind, sub, ns, name string) error {
	id, _ := IdentityFrom(ctx)
	return s.authorizeAttrs(ctx, Attributes{Identity: id, Verb: verb, Kind: kind, Subresource: sub, Namespace: ns, Name: name})
}

// authorizeWrite is authorize for update and patch (and get): when the authorizer
// decides on the stored object, it reads it first (a missing object is
// passed as nil; the write then fails with NotFound if allowed).
func (s *Server) authorizeWrite(ctx context.Context, k *kinds.Kind, verb, sub, ns, name string) error {
	id, _ := IdentityFrom(ctx)
	a := Attributes{Identity: id, Verb: verb, Kind: k.Name, Subresource: sub, Namespace: ns, Name: name}
	if sn, ok := s.cfg.Authorizer.(StoredNeeder); ok && sn.NeedsStored(a) {
		cur, err := s.get(ctx, k, ns, name, false)
		if err != nil {
			return err
		}
		if cur != nil {
			a.Stored = cur.obj
		}
	}
	return s.authorizeAttrs(ctx, a)
}

func (s *Server) authorizeAttrs(ctx context.Context, a Attributes) error {
	if err := s.cfg.Authorizer.Authorize(ctx, a); err != nil {
		if errors.Is(err, ErrUndecided) {
			return err // Unavailable, not a refusal: the caller retries
		}
		return forbiddenError{err}
	}
	return nil
}

// forbiddenError is an authorizer's refusal: its message reaches the
// caller as is (it already says who, what and why) and it is ErrForbidden.
type forbiddenError struct{ err error }

func (e forbiddenError) Error() string   { return e.err.Error() }
func (e forbiddenError) Unwrap() []error { return []error{ErrForbidden, e.err} }
