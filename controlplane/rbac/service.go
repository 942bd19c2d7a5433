package rbac

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// PodGetter reads a pod from this control node's store (nil, nil when
// there is none).
type PodGetter func(ctx context.Context, namespace, name string) (*apiv1.Pod, error)

// Reviewer decides an access review for another subject (RBAC only).
type Reviewer interface {
	Decide(ctx context.Context, subject authz.Subject, r authz.Request) (bool, string, error)
}

// Service is the Authorization gRPC service.
type Service struct {
	apiv1.UnimplementedAuthorizationServer
	authorizer api.Authorizer
	reviewer   Reviewer
	reg        *kinds.Registry
	tokens     *Tokens
	pods       PodGetter
}

// NewService returns the service: self reviews and token requests are
// decided by authorizer (the API server's), reviews of another subject by
// reviewer.
func NewService(authorizer api.Authorizer, reviewer Reviewer, reg *kinds.Registry, tokens *Tokens, pods PodGetter) *Service {
	return &Service{authorizer: authorizer, reviewer: reviewer, reg: reg, tokens: tokens, pods: pods}
}

// resourceAttrs turns "pods/log" (or a kind or short name) into
// attributes; resources that are no kind pass as they are.
func (s *Service) resourceAttrs(resource string) (api.Attributes, error) {
	res, sub, _ := strings.Cut(resource, "/")
	if res == "" {
		return api.Attributes{}, status.Error(codes.InvalidArgument, "resource: required (e.g. pods, pods/log, deployments.apps)")
	}
	if k, err := s.reg.Lookup(res); err == nil {
		return api.Attributes{Kind: k.Name, Resource: k.Plural, Group: k.Group, Subresource: sub}, nil
	}
	plural, group, _ := strings.Cut(res, ".")
	return api.Attributes{Resource: plural, Group: group, Subresource: sub}, nil
}

var verbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "impersonate", "*"}

// AccessReview implements apiv1.AuthorizationServer.
func (s *Service) AccessReview(ctx context.Context, req *apiv1.AccessReviewRequest) (*apiv1.AccessReviewResponse, error) {
	caller, ok := api.IdentityFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no caller identity")
	}
	if !contains(verbs, req.GetVerb()) {
		return nil, status.Errorf(codes.InvalidArgument, "verb: %q is not one of %s", req.GetVerb(), strings.Join(verbs, ", "))
	}
	a, err := s.resourceAttrs(req.GetResource())
	if err != nil {
		return nil, err
	}
	a.Verb, a.Namespace, a.Name = req.GetVerb(), req.GetNamespace(), req.GetName()
	if req.GetUser() == "" && len(req.GetGroups()) == 0 {
		a.Identity = caller
		resp := &apiv1.AccessReviewResponse{User: caller.User, Groups: caller.Groups, Allowed: true, Reason: "allowed"}
		if err := s.authorizer.Authorize(ctx, a); err != nil {
			if errors.Is(err, api.ErrUndecided) {
				return nil, status.Error(codes.Unavailable, err.Error())
			}
			resp.Allowed, resp.Reason = false, err.Error()
		}
		return resp, nil
	}
	// Reviewing someone else is impersonation: only who may impersonate
	// users (cluster-admin) may ask.
	if err := s.authorizer.Authorize(ctx, api.Attributes{Identity: caller, Verb: "impersonate", Resource: "users"}); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "--as: %v", err)
	}
	subject := authz.Subject{User: req.GetUser(), Groups: append(req.GetGroups(), authz.AuthenticatedGroup)}
	ok, why, err := s.reviewer.Decide(ctx, subject, authz.Request{Verb: a.Verb, Kind: a.Kind, Resource: a.Resource, Group: a.Group,
		Subresource: a.Subresource, Namespace: a.Namespace, Name: a.Name})
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &apiv1.AccessReviewResponse{Allowed: ok, Reason: why, User: subject.User, Groups: subject.Groups}, nil
}

// CreatePodToken implements apiv1.AuthorizationServer.
func (s *Service) CreatePodToken(ctx context.Context, req *apiv1.CreatePodTokenRequest) (*apiv1.CreatePodTokenResponse, error) {
	caller, ok := api.IdentityFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no caller identity")
	}
	if req.GetNamespace() == "" || req.GetPod() == "" {
		return nil, status.Error(codes.InvalidArgument, "namespace and pod: required")
	}
	pod, err := s.pods(ctx, req.GetNamespace(), req.GetPod())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read pod %s/%s: %v", req.GetNamespace(), req.GetPod(), err)
	}
	// The node a pod is bound to gets its tokens (the kubelet's right);
	// anyone else needs create on serviceaccounts/token.
	node := ""
	if id, err := pki.IdentityFromNames(caller.User, caller.Groups); err == nil && id.Role == pki.RoleNode {
		node = id.Name
	}
	if node == "" || pod == nil || pod.GetSpec().GetNodeName() != node {
		a := api.Attributes{Identity: caller, Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: req.GetNamespace(), Name: pod.GetSpec().GetServiceAccountName()}
		if err := s.authorizer.Authorize(ctx, a); err != nil {
			if node != "" {
				return nil, status.Errorf(codes.PermissionDenied, "forbidden: node %q may get tokens only for pods bound to it; pod %s/%s is not", node, req.GetNamespace(), req.GetPod())
			}
			return nil, status.Error(codes.PermissionDenied, err.Error())
		}
	}
	if pod == nil {
		return nil, status.Errorf(codes.NotFound, "pod %s/%s not found", req.GetNamespace(), req.GetPod())
	}
	sa := pod.GetSpec().GetServiceAccountName()
	if sa == "" {
		sa = "default"
	}
	tok, exp, err := s.tokens.Mint(PodRef{Namespace: req.GetNamespace(), Name: req.GetPod(), UID: pod.GetMetadata().GetUid(), ServiceAccount: sa},
		req.GetAudience(), time.Duration(req.GetExpirationSeconds())*time.Second)
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &apiv1.CreatePodTokenResponse{Token: tok, ExpirationTimestamp: exp.UTC().Format(time.RFC3339)}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ErrNoToken is the refusal of a call without certificate and token.
var ErrNoToken = fmt.Errorf("no client certificate and no bearer token")
