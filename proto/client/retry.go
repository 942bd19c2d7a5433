package client

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrOutcomeUnknown: a write reached a server, but its answer was lost (the
// connection broke, or the store could not tell whether it committed). The
// write may or may not have been applied; read the object to find out.
// Test with errors.Is; the error's gRPC code is Unknown, so callers that
// retry on Unavailable do not retry it blindly.
var ErrOutcomeUnknown = errors.New("write outcome unknown")

// OutcomeUnknownError is the ErrOutcomeUnknown of one call: the server it
// went to and what broke.
type OutcomeUnknownError struct {
	Server string
	Cause  error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("write outcome unknown: the request reached %s but its answer was lost, so it may or may not have been applied (read the object to find out): %s",
		e.Server, Reason(e.Cause))
}

// Is makes errors.Is(err, ErrOutcomeUnknown) true.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

func (e *OutcomeUnknownError) Unwrap() error { return e.Cause }

// GRPCStatus: Unknown, as the store answers a write it cannot decide.
func (e *OutcomeUnknownError) GRPCStatus() *status.Status {
	return status.New(codes.Unknown, e.Error())
}

// IsOutcomeUnknown: the write may or may not have been applied.
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }

// The API server marks an Unavailable answer to a write it did not apply
// (no leader, no quorum, not authorized yet) with this ErrorInfo; the
// client retries such a write on another server. It must match the
// server's (controlplane/api errors.go).
const (
	notAppliedReason = "NOT_APPLIED"
	notAppliedDomain = "api.skiff.io"
	// quorumLostCause (ErrorInfo metadata "cause"): the server has no
	// leader and reaches too few control nodes to elect one; asking it
	// again before the others are back is pointless.
	quorumLostCause = "QUORUM_LOST"
)

// retryClass says what the client may do after a failed attempt.
type retryClass int

const (
	// final: return the error as it is.
	final retryClass = iota
	// retry: the call was not applied (or is a read); try another server.
	retry
	// unknown: a write may have been applied; return OutcomeUnknownError.
	unknown
)

// classify decides about one attempt's error. sent says whether the call
// was put on a connection (gRPC reports the peer only then): a write that
// never left the client is safe to send again; one that did is safe only
// when the server said it did not apply it.
func classify(err error, write, sent bool) retryClass {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable:
		if !write || !sent || markedNotApplied(st) {
			return retry
		}
		return unknown
	case codes.Unknown:
		// The store's answer to a write it could not decide; a read's
		// Unknown is just an error.
		if write && sent {
			return unknown
		}
	}
	return final
}

func markedNotApplied(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == notAppliedReason && info.GetDomain() == notAppliedDomain {
			return true
		}
	}
	return false
}

// quorumLost says whether err is a server's answer that it has lost quorum.
func quorumLost(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == notAppliedReason &&
			info.GetDomain() == notAppliedDomain && info.GetMetadata()["cause"] == quorumLostCause {
			return true
		}
	}
	return false
}
