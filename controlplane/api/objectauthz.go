package api

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// ErrUndecided is wrapped by an authorizer's error when it cannot decide
// now (its node graph is still being built, no leader to catch up with):
// the caller is answered Unavailable, to retry, and nothing is allowed.
var ErrUndecided = errors.New("authorization cannot be decided now")

// ObjectAuthorizer is implemented by authorizers that also decide a write
// on the object it would store, not only on who writes where: a node may
// update its own Node but not change its taints (Kubernetes'
// NodeRestriction). The server calls it inside the write, after defaults
// and the merge with the stored object, with a.Stored the object the
// write's compare-and-swap is based on (nil on create) and obj the object
// to store: a change made in between fails the write instead of slipping
// past the check.
type ObjectAuthorizer interface {
	AuthorizeObject(ctx context.Context, a Attributes, obj proto.Message) error
}

// authorizeObject runs the ObjectAuthorizer, if any, for a request's
// write. In-process writes without a caller identity (the server's own:
// default namespaces, deletion tasks) are not requests and pass.
func (s *Server) authorizeObject(ctx context.Context, k *kinds.Kind, verb, sub string, stored, obj kinds.Object) error {
	oa, ok := s.cfg.Authorizer.(ObjectAuthorizer)
	if !ok {
		return nil
	}
	id, ok := IdentityFrom(ctx)
	if !ok {
		return nil
	}
	md := obj.GetMetadata()
	a := Attributes{Identity: id, Verb: verb, Kind: k.Name, Subresource: sub, Namespace: md.GetNamespace(), Name: md.GetName()}
	if stored != nil {
		a.Stored = stored
	}
	if err := oa.AuthorizeObject(ctx, a, obj); err != nil {
		return forbiddenError{err}
	}
	return nil
}

func statusSub(status bool) string {
	if status {
		return "status"
	}
	return ""
}
