package client

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// TestCreateManyResendsOnlyNotAppliedItems: of three objects, the server
// creates the first, refuses the second over a conflict, and says it did
// not apply the third (Unavailable with NOT_APPLIED, in the item's
// details). Only the third is sent again, and its second answer is final;
// the caller sees every item's status with its details.
func TestCreateManyResendsOnlyNotAppliedItems(t *testing.T) {
	notApplied, err := status.New(codes.Unavailable, "no raft leader").WithDetails(&errdetails.ErrorInfo{Reason: "NOT_APPLIED", Domain: "api.skiff.io"})
	if err != nil {
		t.Fatal(err)
	}
	item := func(st *status.Status) *apiv1.CreateResult {
		return &apiv1.CreateResult{Code: int32(st.Code()), Message: st.Message(), Details: st.Proto().GetDetails()}
	}
	var sent [][]string
	send := func(_ context.Context, req *apiv1.CreateManyRequest, _ ...grpc.CallOption) (*apiv1.CreateManyResponse, error) {
		var names []string
		resp := &apiv1.CreateManyResponse{}
		for _, o := range req.GetObjects() {
			names = append(names, o.GetKind())
			switch {
			case o.GetKind() == "a":
				resp.Results = append(resp.Results, &apiv1.CreateResult{ResourceVersion: "7"})
			case o.GetKind() == "b":
				resp.Results = append(resp.Results, item(status.New(codes.AlreadyExists, "b exists")))
			case len(sent) == 0: // c, first time
				resp.Results = append(resp.Results, item(notApplied))
			default:
				resp.Results = append(resp.Results, &apiv1.CreateResult{ResourceVersion: "9"})
			}
		}
		sent = append(sent, names)
		return resp, nil
	}
	moved := 0
	envs := []*apiv1.Object{{Kind: "a"}, {Kind: "b"}, {Kind: "c"}}
	res, err := resendNotApplied(context.Background(), send, envs, retryPolicy{attempts: 5, pause: time.Millisecond, maxPause: time.Millisecond, next: func() { moved++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || len(sent[1]) != 1 || sent[1][0] != "c" || moved != 1 {
		t.Fatalf("sent %v (moved server %d times), want [a b c] then [c] on the next server", sent, moved)
	}
	if res[0].GetResourceVersion() != "7" || codes.Code(res[1].GetCode()) != codes.AlreadyExists || res[2].GetResourceVersion() != "9" {
		t.Fatalf("results: %v", res)
	}

	// Out of attempts, the not-applied item's error keeps its detail.
	sent = nil
	res, err = resendNotApplied(context.Background(), send, envs[2:], retryPolicy{attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e := createResultError(res[0]); classify(e, true, true) != retry {
		t.Fatalf("not-applied item's error lost its detail: %v", e)
	}
}
