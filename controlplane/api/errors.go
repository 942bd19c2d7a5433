package api

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
)

// Sentinel errors of the API server. Handlers wrap them with %w; toStatus
// maps them to gRPC codes at the boundary.
var (
	// ErrNotFound: the object (or its namespace) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: Create of a name that is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the resourceVersion or a precondition is stale.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request or object failed validation.
	ErrInvalid = errors.New("invalid")
	// ErrNamespaceTerminating: the namespace is being deleted.
	ErrNamespaceTerminating = errors.New("namespace is terminating")
	// ErrQuotaExceeded: a ResourceQuota or LimitRange refused the object.
	ErrQuotaExceeded = errors.New("exceeded quota")
	// ErrForbidden: the authorizer refused the caller.
	ErrForbidden = errors.New("forbidden")
	// ErrTooOld: a watch asked for history the store no longer keeps.
	ErrTooOld = errors.New("resourceVersion too old, re-list")
	// ErrNotBindable: the pod is being deleted or has finished.
	ErrNotBindable = errors.New("pod cannot be bound")
)

// toStatus maps an error to a gRPC status error. Only gRPC handlers call it.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrConflict):
		code = codes.Aborted
	case errors.Is(err, ErrInvalid), errors.Is(err, kinds.ErrUnknownKind),
		errors.Is(err, kinds.ErrUnsupportedVersion), errors.Is(err, manifest.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNamespaceTerminating), errors.Is(err, ErrNotBindable), errors.Is(err, ErrManyBudgets):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrQuotaExceeded), errors.Is(err, ErrDisruptionBudget):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUndecided):
		return notAppliedStatus(trimSentinel(err.Error()))
	case errors.Is(err, ErrForbidden):
		code = codes.PermissionDenied
	case errors.Is(err, ErrTooOld), errors.Is(err, consensus.ErrCompacted), errors.Is(err, consensus.ErrWatcherTooSlow):
		code = codes.OutOfRange
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, consensus.ErrNoQuorum):
		return notAppliedStatus(err.Error(), quorumLostCause)
	case errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrLeadershipLost):
		return notAppliedStatus(err.Error())
	default:
		return consensus.ToStatus(err)
	}
	return status.Error(code, trimSentinel(err.Error()))
}

// The ErrorInfo of an Unavailable answer to a call that changed nothing
// (the store had no leader or quorum before writing, the caller could not
// be authorized yet): the client sends such a write again, where any other
// Unavailable after the request was sent leaves its outcome unknown. It
// matches proto/client's retry.go.
// With metadata cause=QUORUM_LOST the node knows no leader can be elected
// while it stays cut off: the client tries the other servers but not this
// one again.
const (
	notAppliedReason = "NOT_APPLIED"
	notAppliedDomain = "api.skiff.io"
	quorumLostCause  = "QUORUM_LOST"
)

func notAppliedStatus(msg string, cause ...string) error {
	info := &errdetails.ErrorInfo{Reason: notAppliedReason, Domain: notAppliedDomain}
	if len(cause) > 0 {
		info.Metadata = map[string]string{"cause": cause[0]}
	}
	st, err := status.New(codes.Unavailable, msg).WithDetails(info)
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// statusOf is toStatus for one item of a batch call's results: the code
// number and message.
func statusOf(err error) (int32, string) {
	st, _ := status.FromError(toStatus(err))
	return int32(st.Code()), st.Message()
}

// trimSentinel drops a leading "not found: " (and the like) that wrapping
// a sentinel put before a message that already says it.
func trimSentinel(msg string) string {
	for _, s := range []error{ErrNotFound, ErrAlreadyExists, ErrInvalid, ErrQuotaExceeded, ErrNamespaceTerminating} {
		if p := s.Error() + ": "; strings.HasPrefix(msg, p) {
			return msg[len(p):]
		}
	}
	return msg
}
