package consensus

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A follower tells "not applied, retry at the leader" from other answers by
// the status detail, not by the message: the same code and message without
// the detail is not a safe retry.
func TestNotAppliedIsToldByDetail(t *testing.T) {
	st, ok := status.FromError(notAppliedStatus())
	if !ok || !isNotApplied(st) {
		t.Fatalf("notAppliedStatus() = %v: not recognized as not applied", st)
	}
	lookalike := status.New(codes.FailedPrecondition, ErrNotLeader.Error())
	if isNotApplied(lookalike) {
		t.Fatal("a FailedPrecondition carrying ErrNotLeader's text but no detail was taken for not applied")
	}
	if isNotApplied(status.New(codes.Unavailable, "x")) {
		t.Fatal("Unavailable taken for not applied")
	}
}
