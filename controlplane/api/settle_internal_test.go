package api

import (
	"context"
	"testing"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// settle decides a write the store could not by reading its object back:
// the exact bytes the write put mean it committed (with the stored
// revision); other bytes, or no object, leave the outcome unknown.
func TestSettleReadsTheWriteBack(t *testing.T) {
	s := startTokenServer(t, false)
	if _, err := createT(t, s, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	out, err := createT(t, s, configMap("default", "written", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k := s.kind("ConfigMap")
	st, err := s.get(ctx, k, "default", "written", false)
	if err != nil || st == nil {
		t.Fatalf("get: %v %v", st, err)
	}
	stored, err := encode(st.obj)
	if err != nil {
		t.Fatal(err)
	}
	other := configMap("default", "written", map[string]string{"k": "other"})
	otherBytes, err := encode(other)
	if err != nil {
		t.Fatal(err)
	}
	txn := func(key string, value []byte) *txnBuilder {
		tb := &txnBuilder{objectKey: key}
		tb.put(key, value)
		return tb
	}
	if rev, ok := s.settle(ctx, txn(k.Key("default", "written"), stored)); !ok || formatRev(rev) != out.GetMetadata().GetResourceVersion() {
		t.Errorf("settle of the write that is stored: rev %d ok %v, want its revision %s", rev, ok, out.GetMetadata().GetResourceVersion())
	}
	if _, ok := s.settle(ctx, txn(k.Key("default", "written"), otherBytes)); ok {
		t.Error("settle of a write whose object holds other bytes: committed, want unknown")
	}
	if _, ok := s.settle(ctx, txn(k.Key("default", "never"), stored)); ok {
		t.Error("settle of a write whose object does not exist: committed, want unknown")
	}
	del := &txnBuilder{objectKey: k.Key("default", "written")}
	del.del(k.Key("default", "written"))
	if _, ok := s.settle(ctx, del); ok {
		t.Error("settle of a delete: committed, want unknown (the client settles deletes)")
	}
}
