package api

import (
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
)

// TestNotAppliedMarksUnavailableWrites: the errors that stop a call before
// it writes carry the ErrorInfo by which the client knows it may send a
// write again; an undecided store write does not.
func TestNotAppliedMarksUnavailableWrites(t *testing.T) {
	marked := func(err error) bool {
		st := status.Convert(toStatus(err))
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "NOT_APPLIED" && info.GetDomain() == "api.skiff.io" {
				return st.Code() == codes.Unavailable
			}
		}
		return false
	}
	for _, err := range []error{consensus.ErrNoLeader, consensus.ErrNoQuorum, consensus.ErrLeadershipLost, ErrGraphNotReady} {
		if !marked(fmt.Errorf("create pods: %w", err)) {
			t.Errorf("%v: not marked not-applied", err)
		}
	}
	st := status.Convert(toStatus(fmt.Errorf("create: %w", consensus.ErrNoQuorum)))
	if len(st.Details()) != 1 || st.Details()[0].(*errdetails.ErrorInfo).GetMetadata()["cause"] != "QUORUM_LOST" {
		t.Errorf("quorum lost without its cause: %v", st.Details())
	}
	if marked(fmt.Errorf("create: %w", consensus.ErrIndeterminate)) || marked(consensus.ErrStopped) {
		t.Error("an undecided write or a stopping store is marked not-applied")
	}
}

// TestCreateManyItemKeepsNotApplied: a CreateMany item's result carries its
// status's details, so the client can tell a not-applied item.
func TestCreateManyItemKeepsNotApplied(t *testing.T) {
	r := failedCreate(fmt.Errorf("create pods: %w", consensus.ErrNoLeader))
	st := status.FromProto(&spb.Status{Code: r.GetCode(), Message: r.GetMessage(), Details: r.GetDetails()})
	if st.Code() != codes.Unavailable || len(st.Details()) != 1 || st.Details()[0].(*errdetails.ErrorInfo).GetReason() != "NOT_APPLIED" {
		t.Fatalf("item result lost NOT_APPLIED: %v %v", st, st.Details())
	}
	if r := failedCreate(fmt.Errorf("create: %w", consensus.ErrIndeterminate)); len(r.GetDetails()) != 0 {
		t.Fatalf("undecided item marked: %v", r.GetDetails())
	}
}
