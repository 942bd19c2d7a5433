package client

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Evict is a write: retried only when it was never applied (see do).
func (f *failoverAPI) Evict(ctx context.Context, in *apiv1.EvictRequest, opts ...grpc.CallOption) (*apiv1.EvictResponse, error) {
	return unaryWrite(ctx, f.c, in, opts, apiv1.APIClient.Evict)
}

// EvictOptions shape an eviction.
type EvictOptions struct {
	// GracePeriodSeconds overrides the pod's terminationGracePeriodSeconds.
	GracePeriodSeconds *int64
	DryRun             bool
}

// Evict deletes pod ns/name unless a PodDisruptionBudget forbids it now:
// then the error satisfies IsTooManyRequests and names the budget. The
// pod is returned as deleted, or as marked while its grace period runs
// (removed false).
func (c *Client) Evict(ctx context.Context, ns, name string, opts EvictOptions) (obj Object, removed bool, err error) {
	resp, err := c.api.Evict(ctx, &apiv1.EvictRequest{Namespace: c.defaultNS(ns), Name: name,
		GracePeriodSeconds: opts.GracePeriodSeconds, DryRun: opts.DryRun})
	if err != nil {
		return nil, false, err
	}
	obj, err = Unpack(resp.GetObject())
	return obj, resp.GetRemoved(), err
}

// IsTooManyRequests reports an eviction refused by a disruption budget
// (Kubernetes' 429; ResourceExhausted here, as a quota refusal).
func IsTooManyRequests(err error) bool { return status.Code(err) == codes.ResourceExhausted }
