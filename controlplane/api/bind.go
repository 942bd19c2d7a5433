package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Bind implements apiv1.APIServer: a batch of pods/binding creates.
//
// Why a batch RPC rather than one Update per pod: an Update reads the pod
// linearizably, validates the whole object and commits one Raft entry; for
// the scheduler, which binds thousands of pods a second, that per-pod cost
// was the ceiling (BENCHMARKS.md, Scheduler). A batch confirms leadership
// once, changes only spec.nodeName and the PodScheduled condition, and
// commits every binding as its own conditional transaction inside one
// store Batch (one Raft entry).
func (s *Server) Bind(ctx context.Context, req *apiv1.BindRequest) (*apiv1.BindResponse, error) {
	bs := req.GetBindings()
	if len(bs) > consensus.MaxBatchTxns {
		return nil, status.Errorf(codes.InvalidArgument, "bindings: %d exceeds the limit of %d per call", len(bs), consensus.MaxBatchTxns)
	}
	k, err := s.lookup("Pod")
	if err != nil {
		return nil, toStatus(err)
	}
	out := &apiv1.BindResponse{Results: make([]*apiv1.BindResult, len(bs))}
	// One ReadIndex for the batch; each pod is then read from this node's
	// state, which is at least as new as the call. A pod changing between
	// the read and the commit fails its own compare.
	if err := s.store.Linearize(ctx); err != nil {
		return nil, toStatus(fmt.Errorf("bind: %w", err))
	}
	txns := make([]*storepb.TxnRequest, 0, len(bs))
	pending := make([]int, 0, len(bs)) // result index of each txn
	now := s.timestamp(time.Now())
	for i, b := range bs {
		txn, err := s.bindingTxn(ctx, k, b, now)
		if err != nil {
			out.Results[i] = bindError(err)
			continue
		}
		txns = append(txns, txn)
		pending = append(pending, i)
	}
	results, err := s.store.Batch(ctx, txns)
	if err != nil {
		return nil, toStatus(fmt.Errorf("bind: %w", err))
	}
	for j, r := range results {
		i := pending[j]
		b := bs[i]
		switch {
		case r.GetCode() != storepb.CommandResult_OK:
			out.Results[i] = &apiv1.BindResult{Code: int32(codes.Internal), Message: fmt.Sprintf("pods %q: store refused the binding: %s", b.GetName(), r.GetMessage())}
		case !r.GetTxn().GetSucceeded():
			out.Results[i] = bindError(conflictOn(k, b.GetName(), errors.New("changed between read and bind")))
		default:
			out.Results[i] = &apiv1.BindResult{ResourceVersion: formatRev(r.GetTxn().GetRevision())}
		}
	}
	return out, nil
}

// bindingTxn checks one binding against the stored pod and returns the
// conditional write that binds it.
func (s *Server) bindingTxn(ctx context.Context, k *kinds.Kind, b *apiv1.Binding, now string) (*storepb.TxnRequest, error) {
	ns := scope(k, b.GetNamespace())
	name := b.GetName()
	if err := s.authorize(ctx, "create", k.Name, "binding", ns, name); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%w: binding: name is required", ErrInvalid)
	}
	if errs := kinds.IsDNS1123Subdomain(b.GetNodeName()); len(errs) > 0 {
		return nil, fmt.Errorf("%w: pods %q binding: target node name %q: %s", ErrInvalid, name, b.GetNodeName(), strings.Join(errs, "; "))
	}
	want, err := parseRev("resourceVersion", b.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	cur, err := s.get(ctx, k, ns, name, true)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, notFound(k, ns, name)
	}
	pod := cur.obj.(*apiv1.Pod)
	md := pod.GetMetadata()
	switch {
	case b.GetUid() != "" && b.GetUid() != md.GetUid():
		return nil, conflictOn(k, name, fmt.Errorf("uid is %s, the binding is for %s", md.GetUid(), b.GetUid()))
	case want != 0 && want != cur.rev:
		return nil, conflictOn(k, name, fmt.Errorf("resourceVersion %d is stale, current is %d", want, cur.rev))
	case pod.GetSpec().GetNodeName() != "":
		return nil, fmt.Errorf("%w: pods %q is already assigned to node %q", ErrConflict, name, pod.GetSpec().GetNodeName())
	case md.GetDeletionTimestamp() != "":
		return nil, fmt.Errorf("%w: pods %q is being deleted", ErrNotBindable, name)
	case pod.GetStatus().GetPhase() == "Succeeded" || pod.GetStatus().GetPhase() == "Failed":
		return nil, fmt.Errorf("%w: pods %q has finished (%s)", ErrNotBindable, name, pod.GetStatus().GetPhase())
	}
	// get decoded this pod for us alone (strings alias the stored bytes,
	// which no assignment here touches): change it in place.
	next := pod
	next.Spec.NodeName = b.GetNodeName()
	next.Metadata.Generation++ // the spec changed, as an Update would count it
	if next.Status == nil {
		next.Status = &apiv1.PodStatus{}
	}
	if next.Status.Phase == "" {
		next.Status.Phase = "Pending"
	}
	kinds.SetPodCondition(next.Status, &apiv1.PodCondition{Type: "PodScheduled", Status: "True", LastTransitionTime: now})
	value, err := encode(next)
	if err != nil {
		return nil, err
	}
	key := []byte(k.Key(ns, name))
	return &storepb.TxnRequest{
		Compare: []*storepb.Compare{{Key: key, Target: storepb.Compare_MOD_REVISION, Result: storepb.Compare_EQUAL, Number: cur.rev}},
		Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: key, Value: value}}}},
	}, nil
}

func bindError(err error) *apiv1.BindResult {
	code, msg := statusOf(err)
	return &apiv1.BindResult{Code: code, Message: msg}
}
