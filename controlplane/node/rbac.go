package node

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/rbac"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// rbacParts are a control node's RBAC pieces: the policy cache its
// authorizer decides on, the token signer/verifier, the Authorization
// service and the bearer-token interceptors of the certificate-less side.
type rbacParts struct {
	cache   *rbac.Cache
	tokens  *rbac.Tokens
	service *rbac.Service
	bearer  *rbac.Bearer
	z       *authz.Authorizer
}

func newRBACParts(store *consensus.Store, reg *kinds.Registry, graph *api.NodeGraph, bundle *pki.Bundle, log *slog.Logger) (*rbacParts, Authorizer) {
	// The bearer interceptors are wired with the API server's once it exists
	// (setAPI).
	p := &rbacParts{cache: rbac.NewCache(store, reg, log)}
	p.z = authz.New(graph).WithPolicy(p.cache, reg)
	az := authorizer{p.z}
	getPod := storePodGetter(store, reg)
	keys := func() (*ecdsa.PrivateKey, []*ecdsa.PrivateKey) {
		k := bundle.Signer().Key
		if k == nil {
			return nil, nil
		}
		return k, []*ecdsa.PrivateKey{k}
	}
	p.tokens = rbac.NewTokens(keys, func(ctx context.Context, ns, name string) (string, string, bool, error) {
		pod, err := getPod(ctx, ns, name)
		if err != nil || pod == nil {
			return "", "", false, err
		}
		sa := pod.GetSpec().GetServiceAccountName()
		if sa == "" {
			sa = "default"
		}
		return pod.GetMetadata().GetUid(), sa, true, nil
	})
	p.service = rbac.NewService(az, p.z, reg, p.tokens, getPod)
	return p, az
}

// anonOptions are the certificate-less side's interceptors: a service
// account token authenticates the call, then the API server's own
// interceptors run (identity, limits, metrics); or it is the join
// service, which runs without them (as before tokens).
func (p *rbacParts) anonOptions(srv *api.Server) []grpc.ServerOption {
	unary, stream := srv.Interceptors()
	p.bearer = rbac.NewBearer(p.tokens, unary, stream, joinv1.Join_ServiceDesc.ServiceName)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(p.bearer.Unary), grpc.ChainStreamInterceptor(p.bearer.Stream),
		// Clients in pods ping every 10 s, as ctl does.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true})}
}

// storePodGetter reads a pod from this node's store, without a Raft round
// (a token check per request must not cost one): a pod deleted a moment
// ago may still be found on a lagging follower until it catches up.
func storePodGetter(store *consensus.Store, reg *kinds.Registry) rbac.PodGetter {
	pods, _ := reg.ForKind("Pod")
	return func(ctx context.Context, ns, name string) (*apiv1.Pod, error) {
		resp, err := store.Range(ctx, &storepb.RangeRequest{Key: []byte(pods.Key(ns, name)), Stale: true})
		if err != nil {
			return nil, fmt.Errorf("read pod %s/%s: %w", ns, name, err)
		}
		if len(resp.Kvs) == 0 {
			return nil, nil
		}
		pod := &apiv1.Pod{}
		if err := codec.Unmarshal(resp.Kvs[0].Value, pod); err != nil {
			return nil, fmt.Errorf("decode pod %s/%s: %w", ns, name, err)
		}
		return pod, nil
	}
}
