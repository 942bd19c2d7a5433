package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/audit"
	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/pki"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// authorizer is api.Authorizer (and api.StoredNeeder, api.ObjectAuthorizer)
// over controlplane/authz with identities from the certificate subject
// (pki conventions).
type authorizer struct{ z *authz.Authorizer }

var (
	_ api.Authorizer       = authorizer{}
	_ api.StoredNeeder     = authorizer{}
	_ api.ObjectAuthorizer = authorizer{}
	_ authz.Graph          = (*api.NodeGraph)(nil)
)

// Authorizer is what the API server asks of the cluster's authorizer.
type Authorizer interface {
	api.Authorizer
	api.StoredNeeder
	api.ObjectAuthorizer
}

// NewAuthorizer is the authorizer control nodes give their API server: the
// cluster's roles (controlplane/authz) over certificate identities, nodes'
// reads of Secrets and ConfigMaps decided on graph (nil: nodes read none).
// Tests that run API servers outside a control node use it for the real
// decisions.
func NewAuthorizer(graph *api.NodeGraph) Authorizer {
	if graph == nil {
		return authorizer{authz.New(nil)}
	}
	return authorizer{authz.New(graph)}
}

func (a authorizer) request(attrs api.Attributes) (authz.Request, error) {
	id, err := requestIdentity(attrs.Identity)
	if err != nil {
		return authz.Request{}, fmt.Errorf("%w: %v", authz.ErrForbidden, err)
	}
	return authz.Request{Identity: id, Groups: attrs.Identity.Groups, Verb: attrs.Verb, Kind: attrs.Kind, Subresource: attrs.Subresource,
		Resource: attrs.Resource, Group: attrs.Group, Namespace: attrs.Namespace, Name: attrs.Name, LabelSelector: attrs.LabelSelector, Stored: attrs.Stored}, nil
}

// requestIdentity is the pki identity of a caller: from its certificate
// subject, or, for a caller without a certificate whose identity the
// bearer token interceptor set (controlplane/rbac), its service account.
func requestIdentity(id api.Identity) (pki.Identity, error) {
	if id.Cert == nil {
		if ns, name, ok := authz.ParseServiceAccountUser(id.User); ok {
			return pki.Identity{User: id.User, Role: authz.RoleServiceAccount, Name: ns + ":" + name}, nil
		}
	}
	return pki.IdentityFromNames(id.User, id.Groups)
}

func (a authorizer) Authorize(ctx context.Context, attrs api.Attributes) error {
	r, err := a.request(attrs)
	if err != nil {
		return err
	}
	if err := a.z.Authorize(ctx, r); err != nil {
		if errors.Is(err, authz.ErrPolicyNotReady) {
			return fmt.Errorf("%w: %w", api.ErrUndecided, err)
		}
		return err
	}
	return nil
}

func (a authorizer) AuthorizeObject(ctx context.Context, attrs api.Attributes, obj proto.Message) error {
	r, err := a.request(attrs)
	if err != nil {
		return err
	}
	return a.z.AuthorizeObject(ctx, r, obj)
}

func (a authorizer) NeedsStored(attrs api.Attributes) bool {
	r, err := a.request(attrs)
	return err == nil && authz.NeedsStored(r)
}

// callerIdentity is the pki identity of an authenticated gRPC caller.
func callerIdentity(ctx context.Context) (pki.Identity, error) {
	id, ok := api.IdentityFrom(ctx)
	if !ok {
		return pki.Identity{}, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	pid, err := pki.IdentityFromNames(id.User, id.Groups)
	if err != nil {
		return pki.Identity{}, status.Error(codes.PermissionDenied, err.Error())
	}
	return pid, nil
}

// requireAdmin lets admins (and control nodes, which forward admin calls
// to the leader) through.
func requireAdmin(ctx context.Context, what string) error {
	id, err := callerIdentity(ctx)
	if err != nil {
		return err
	}
	if id.Role != pki.RoleAdmin && id.Role != pki.RoleControl {
		return status.Errorf(codes.PermissionDenied, "forbidden: user %q (role %s) may not %s: only admins may", id.User, id.Role, what)
	}
	return nil
}

// anonymousOnly answers every call on the certificate-less side of the API
// port except the join service.
func anonymousOnly(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	return status.Errorf(codes.Unauthenticated,
		"%s needs a client certificate signed by the cluster CA and none was presented (use a client config from `ctl init` or `ctl user create`); without one only %s is served",
		method, joinv1.Join_ServiceDesc.ServiceName)
}

// auditor records mutating calls of the API, admin and join services.
type auditor struct {
	log *audit.Log
	reg *kinds.Registry
	lg  *slog.Logger
}

func (a *auditor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	e, ok := a.describe(info.FullMethod, req)
	resp, err := handler(ctx, req)
	if ok {
		a.record(ctx, e, err)
	}
	return resp, err
}

// auditedStreams are the streaming calls written to the audit log: a
// snapshot holds every Secret in the clear, so reading one is audited
// like a write.
var auditedStreams = map[string]audit.Entry{
	adminv1.Admin_SaveSnapshot_FullMethodName:    {Verb: "save", Kind: "Snapshot"},
	adminv1.Admin_RestoreSnapshot_FullMethodName: {Verb: "restore", Kind: "Snapshot"},
}

func (a *auditor) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	e, ok := auditedStreams[info.FullMethod]
	if !ok {
		return handler(srv, ss)
	}
	err := handler(srv, ss)
	a.record(ss.Context(), e, err)
	return err
}

func (a *auditor) record(ctx context.Context, e audit.Entry, err error) {
	if id, ok := api.IdentityFrom(ctx); ok {
		e.User = id.User
		if pid, perr := pki.IdentityFromNames(id.User, id.Groups); perr == nil {
			e.Role = string(pid.Role)
		}
	} else if e.User == "" {
		e.User = "anonymous"
	}
	st := status.Convert(err)
	e.Code = st.Code().String()
	if err != nil {
		e.Message = st.Message()
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		e.Remote = p.Addr.String()
	}
	if rerr := a.log.Record(e); rerr != nil {
		a.lg.Error("audit log write failed", "err", rerr)
	}
}

// describe says what a call does, and whether it is audited at all.
func (a *auditor) describe(method string, req any) (audit.Entry, bool) {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	switch svc {
	case apiv1.API_ServiceDesc.ServiceName:
		return a.describeAPI(name, req)
	case adminv1.Admin_ServiceDesc.ServiceName:
		switch r := req.(type) {
		case *adminv1.CreateTokenRequest:
			// Name is the role; Subresource the node a node-bound token is for.
			return audit.Entry{Verb: "create", Kind: "JoinToken", Name: r.GetRole(), Subresource: r.GetNode()}, true
		case *adminv1.RevokeTokenRequest:
			return audit.Entry{Verb: "revoke", Kind: "JoinToken", Name: r.GetId()}, true
		case *adminv1.RemoveMemberRequest:
			return audit.Entry{Verb: "delete", Kind: "ControlMember", Name: r.GetId()}, true
		case *adminv1.CreateUserRequest:
			return audit.Entry{Verb: "create", Kind: "User", Name: r.GetName(), Subresource: r.GetRole()}, true
		case *adminv1.RotateCARequest:
			if r.GetPhase() == phaseStatus {
				return audit.Entry{}, false // a read
			}
			return audit.Entry{Verb: "rotate", Kind: "CA", Name: r.GetPhase()}, true
		case *adminv1.GossipKeyringRequest:
			if r.GetOp() == keyringList {
				return audit.Entry{}, false // a read
			}
			// Name is the key's fingerprint, never the key.
			return audit.Entry{Verb: r.GetOp(), Kind: "GossipKey", Name: keyFingerprint(r.GetKey())}, true
		case *adminv1.RevokeIdentityRequest:
			kind := "User"
			if strings.HasSuffix(method, "/RevokeNode") {
				kind = "Node"
			}
			return audit.Entry{Verb: "revoke", Kind: kind, Name: r.GetName()}, true
		}
	case joinv1.Join_ServiceDesc.ServiceName:
		switch r := req.(type) {
		case *joinv1.JoinRequest:
			// Anonymous: the token id names the caller (never the secret).
			return audit.Entry{User: "token:" + r.GetTokenId(), Verb: "join", Kind: strings.TrimPrefix(r.GetRole().String(), "ROLE_"), Name: r.GetNodeName()}, true
		case *joinv1.RenewCertificateRequest:
			return audit.Entry{Verb: "renew", Kind: "Certificate"}, true
		}
	}
	return audit.Entry{}, false
}

func (a *auditor) describeAPI(method string, req any) (audit.Entry, bool) {
	fromEnvelope := func(verb, sub string, env *apiv1.Object) (audit.Entry, bool) {
		e := audit.Entry{Verb: verb, Kind: env.GetKind(), Subresource: sub}
		if obj, k, err := a.reg.Unpack(env); err == nil {
			e.Kind = k.Name
			e.Namespace, e.Name = obj.GetMetadata().GetNamespace(), obj.GetMetadata().GetName()
		}
		return e, true
	}
	switch r := req.(type) {
	case *apiv1.CreateRequest:
		return fromEnvelope("create", "", r.GetObject())
	case *apiv1.UpdateRequest:
		if method == "UpdateStatus" {
			return fromEnvelope("update", "status", r.GetObject())
		}
		return fromEnvelope("update", "", r.GetObject())
	case *apiv1.ApplyRequest:
		return fromEnvelope("apply", "", r.GetObject())
	case *apiv1.PatchRequest:
		sub := ""
		if r.GetStatus() {
			sub = "status"
		}
		return audit.Entry{Verb: "patch", Kind: r.GetKind(), Subresource: sub, Namespace: r.GetNamespace(), Name: r.GetName()}, true
	case *apiv1.DeleteRequest:
		return audit.Entry{Verb: "delete", Kind: r.GetKind(), Namespace: r.GetNamespace(), Name: r.GetName()}, true
	case *apiv1.EvictRequest:
		return audit.Entry{Verb: "create", Kind: "Pod", Subresource: "eviction", Namespace: r.GetNamespace(), Name: r.GetName()}, true
	}
	return audit.Entry{}, false
}
