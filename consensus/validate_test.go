package consensus

import (
	"errors"
	"strings"
	"testing"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Errors name the field at fault, with its index in the transaction.
func TestValidateTxnNamesTheField(t *testing.T) {
	put := func(key string) *storepb.RequestOp {
		return &storepb.RequestOp{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte(key)}}}
	}
	rev := int64(-1)
	for _, tc := range []struct {
		txn  *storepb.TxnRequest
		want string
	}{
		{&storepb.TxnRequest{Success: []*storepb.RequestOp{put("/a"), put("")}}, "txn.success[1].put.key: key is empty"},
		{&storepb.TxnRequest{Compare: []*storepb.Compare{{Key: []byte("/a")}, {}}}, "txn.compare[1].key: key is empty"},
		{&storepb.TxnRequest{Failure: []*storepb.RequestOp{{Op: &storepb.RequestOp_Delete{Delete: &storepb.DeleteRequest{Key: []byte("/a"), IfModRevision: &rev}}}}},
			"txn.failure[0].delete.if_mod_revision: -1 is negative"},
		{&storepb.TxnRequest{Success: []*storepb.RequestOp{{}}}, "txn.success[0]: empty op"},
	} {
		err := validateTxn(tc.txn, true)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validateTxn = %v, want %q", err, tc.want)
		}
	}
	if err := validateTxn(&storepb.TxnRequest{Success: []*storepb.RequestOp{put("/a")}}, false); err != nil {
		t.Fatalf("valid txn refused: %v", err)
	}
}
