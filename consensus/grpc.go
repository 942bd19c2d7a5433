package consensus

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// registerServices puts the KV, Cluster and Internal services on a gRPC
// server. The store serves them on its own mutual-TLS consensus port, which
// only control nodes (and tools holding a control certificate) can reach.
func registerServices(srv *grpc.Server, s *Store) {
	storepb.RegisterKVServer(srv, kvServer{s: s})
	storepb.RegisterClusterServer(srv, clusterServer{s: s})
	storepb.RegisterInternalServer(srv, internalServer{s: s})
}

// ToStatus maps the package's errors to gRPC status codes; it is used only
// at gRPC boundaries.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isOurs(err) {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrConflict):
		code = codes.Aborted
	case errors.Is(err, ErrKeyNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrNotLeader):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrStopped), errors.Is(err, ErrLeadershipLost), errors.Is(err, ErrNoQuorum):
		code = codes.Unavailable
	case errors.Is(err, ErrCompacted):
		code = codes.OutOfRange
	case errors.Is(err, ErrWatcherTooSlow):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrIndeterminate):
		code = codes.Unknown
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func isOurs(err error) bool {
	for _, s := range []error{ErrInvalid, ErrConflict, ErrKeyNotFound, ErrNotLeader, ErrNoLeader, ErrLeadershipLost, ErrNoQuorum, ErrStopped, ErrCompacted, ErrWatcherTooSlow, ErrIndeterminate} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FromStatus maps a gRPC status from a store service back to the package's
// sentinel errors (keeping the message).
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	var base error
	switch st.Code() {
	case codes.InvalidArgument:
		base = ErrInvalid
	case codes.Aborted:
		base = ErrConflict
	case codes.NotFound:
		base = ErrKeyNotFound
	case codes.FailedPrecondition:
		base = ErrNotLeader
	case codes.Unavailable:
		base = ErrNoLeader
	case codes.OutOfRange:
		base = ErrCompacted
	case codes.ResourceExhausted:
		base = ErrWatcherTooSlow
	case codes.Unknown:
		base = ErrIndeterminate
	default:
		return err
	}
	return &remoteError{base: base, msg: st.Message()}
}

type remoteError struct {
	base error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.base }

type kvServer struct {
	storepb.UnimplementedKVServer
	s *Store
}

func (k kvServer) Put(ctx context.Context, r *storepb.PutRequest) (*storepb.PutResponse, error) {
	resp, err := k.s.Put(ctx, r)
	return resp, ToStatus(err)
}

func (k kvServer) Delete(ctx context.Context, r *storepb.DeleteRequest) (*storepb.DeleteResponse, error) {
	resp, err := k.s.Delete(ctx, r)
	return resp, ToStatus(err)
}

func (k kvServer) Txn(ctx context.Context, r *storepb.TxnRequest) (*storepb.TxnResponse, error) {
	resp, err := k.s.Txn(ctx, r)
	return resp, ToStatus(err)
}

func (k kvServer) Range(ctx context.Context, r *storepb.RangeRequest) (*storepb.RangeResponse, error) {
	resp, err := k.s.Range(ctx, r)
	return resp, ToStatus(err)
}

func (k kvServer) Watch(r *storepb.WatchRequest, stream storepb.KV_WatchServer) error {
	w, err := k.s.Watch(stream.Context(), r.Key, r.Prefix, r.StartRevision)
	if err != nil {
		return ToStatus(err)
	}
	defer w.Stop()
	for b := range w.C {
		if err := stream.Send(&storepb.WatchResponse{Revision: b.Revision, Events: b.Events}); err != nil {
			return err
		}
	}
	if err := w.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return ToStatus(err)
	}
	return nil
}

type clusterServer struct {
	storepb.UnimplementedClusterServer
	s *Store
}

func (c clusterServer) MemberList(ctx context.Context, _ *storepb.MemberListRequest) (*storepb.MemberListResponse, error) {
	ms, err := c.s.Members(ctx)
	return &storepb.MemberListResponse{Members: ms}, ToStatus(err)
}

func (c clusterServer) MemberAdd(ctx context.Context, r *storepb.MemberAddRequest) (*storepb.MemberAddResponse, error) {
	m, err := c.s.AddMember(ctx, r.Id, r.Address, r.Nonvoter)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &storepb.MemberAddResponse{Member: m}, nil
}

func (c clusterServer) MemberRemove(ctx context.Context, r *storepb.MemberRemoveRequest) (*storepb.MemberRemoveResponse, error) {
	return &storepb.MemberRemoveResponse{}, ToStatus(c.s.RemoveMember(ctx, r.Id))
}

type internalServer struct {
	storepb.UnimplementedInternalServer
	s *Store
}

// Apply commits a command forwarded by a follower. Only the leader takes
// it; a notApplied status tells the follower to retry elsewhere (the
// command was certainly not applied).
func (i internalServer) Apply(ctx context.Context, r *storepb.ApplyRequest) (*storepb.ApplyResponse, error) {
	if !i.s.IsLeader() {
		return nil, notAppliedStatus()
	}
	res, idx, err := i.s.applyLocal(ctx, r.Command)
	if err != nil {
		if errors.Is(err, errRetryable) {
			return nil, notAppliedStatus()
		}
		return nil, ToStatus(err)
	}
	return &storepb.ApplyResponse{Index: idx, Result: res}, nil
}

func (i internalServer) ReadIndex(ctx context.Context, _ *storepb.ReadIndexRequest) (*storepb.ReadIndexResponse, error) {
	if !i.s.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	idx, err := i.s.reads.get(ctx)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &storepb.ReadIndexResponse{Index: idx}, nil
}

func (i internalServer) Status(context.Context, *storepb.StatusRequest) (*storepb.StatusResponse, error) {
	return i.s.localStatus(), nil
}

// reasonNotApplied is the ErrorInfo reason of a forwarded command the
// receiving node did not apply because it is not the leader: the follower
// decides by it (not by the message, not by the code alone: other
// FailedPrecondition answers may come after the command was applied).
const (
	reasonNotApplied = "NOT_LEADER_NOT_APPLIED"
	errorDomain      = "consensus.skiff.io"
)

func notAppliedStatus() error {
	st, err := status.New(codes.FailedPrecondition, ErrNotLeader.Error()).
		WithDetails(&errdetails.ErrorInfo{Reason: reasonNotApplied, Domain: errorDomain})
	if err != nil {
		return status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	return st.Err()
}

// isNotApplied reports whether a forwarded command's status says it was
// not applied (see notAppliedStatus).
func isNotApplied(st *status.Status) bool {
	if st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain && info.GetReason() == reasonNotApplied {
			return true
		}
	}
	return false
}
