package client

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassifyRetriesOnlyWhatWasNotApplied(t *testing.T) {
	notApplied, err := status.New(codes.Unavailable, "quorum lost").WithDetails(&errdetails.ErrorInfo{Reason: "NOT_APPLIED", Domain: "api.skiff.io"})
	if err != nil {
		t.Fatal(err)
	}
	lost := status.Error(codes.Unavailable, "error reading from server: EOF")
	for _, c := range []struct {
		name        string
		err         error
		write, sent bool
		want        retryClass
	}{
		{"read, connection lost", lost, false, true, retry},
		{"write never sent", lost, true, false, retry},
		{"write sent, connection lost", lost, true, true, unknown},
		{"write sent, server says not applied", notApplied.Err(), true, true, retry},
		{"write sent, store undecided", status.Error(codes.Unknown, "write outcome unknown"), true, true, unknown},
		{"write conflict", status.Error(codes.Aborted, "conflict"), true, true, final},
		{"success", nil, true, true, final},
	} {
		if got := classify(c.err, c.write, c.sent); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if quorumLost(notApplied.Err()) {
		t.Error("a not-applied answer without cause read as quorum lost")
	}
	noQuorum, err := status.New(codes.Unavailable, "quorum lost").WithDetails(&errdetails.ErrorInfo{Reason: "NOT_APPLIED", Domain: "api.skiff.io", Metadata: map[string]string{"cause": "QUORUM_LOST"}})
	if err != nil {
		t.Fatal(err)
	}
	if !quorumLost(noQuorum.Err()) || classify(noQuorum.Err(), true, true) != retry {
		t.Error("a quorum-lost answer is not recognised as such, or not as safe to send elsewhere")
	}
	e := &OutcomeUnknownError{Server: "s:1", Cause: lost}
	if !errors.Is(e, ErrOutcomeUnknown) || status.Code(e) != codes.Unknown || !errors.Is(e, lost) {
		t.Errorf("OutcomeUnknownError: Is %v code %s", errors.Is(e, ErrOutcomeUnknown), status.Code(e))
	}
}
