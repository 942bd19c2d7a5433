package api

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func TestDecodeMetaMatchesFullDecode(t *testing.T) {
	reg := kinds.NewRegistry()
	k, ok := reg.ForKind("Pod")
	if !ok {
		t.Fatal("no Pod kind")
	}
	p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "ns", Uid: "u-1", Labels: map[string]string{"a": "b"},
		DeletionTimestamp: "2026-11-21T00:00:00Z", Finalizers: []string{"f"},
		OwnerReferences: []*apiv1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Uid: "u-0", Controller: proto.Bool(true)}}},
		Spec: &apiv1.PodSpec{NodeName: "n1", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
	value, err := encode(p)
	if err != nil {
		t.Fatal(err)
	}
	kv := &storepb.KeyValue{Key: []byte(k.Key("ns", "p")), Value: value, ModRevision: 42}
	full, err := decode(k, kv)
	if err != nil {
		t.Fatal(err)
	}
	md, err := decodeMeta(k, kv)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(md, full.GetMetadata()) {
		t.Fatalf("decodeMeta = %v, full decode metadata = %v", md, full.GetMetadata())
	}
	kv.Value = append(append([]byte{}, value...), 0x1a, 0x05, 0x01) // metadata field cut short
	if _, err := decodeMeta(k, kv); err == nil {
		t.Fatal("truncated value decoded without error")
	}
}

func TestViewCacheSharesAndEvicts(t *testing.T) {
	k, _ := kinds.NewRegistry().ForKind("Pod")
	c := newDecodeCache(2)
	kvs := make([]*storepb.KeyValue, 3)
	for i := range kvs {
		value, err := encode(&apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "ns"}})
		if err != nil {
			t.Fatal(err)
		}
		kvs[i] = &storepb.KeyValue{Key: []byte(k.Key("ns", "p")), Value: value, ModRevision: int64(i + 1)}
	}
	a := c.view(k, kvs[0])
	if c.view(k, kvs[0]) != a {
		t.Fatal("second view of the same record was not shared")
	}
	obj, err := a.object()
	if err != nil {
		t.Fatal(err)
	}
	if obj.GetMetadata().GetResourceVersion() != "1" {
		t.Fatalf("resourceVersion %q, want 1", obj.GetMetadata().GetResourceVersion())
	}
	if again, _ := a.object(); again != obj {
		t.Fatal("a view decoded its record twice")
	}
	c.view(k, kvs[1])
	c.view(k, kvs[2]) // evicts kvs[0]
	if c.view(k, kvs[0]) == a {
		t.Fatal("record kept beyond the cache's size")
	}
	if len(c.views.m) != 2 {
		t.Fatalf("cache holds %d records, want 2", len(c.views.m))
	}
}

func TestEnvelopeCacheSharesPerRecordAndRevision(t *testing.T) {
	k, _ := kinds.NewRegistry().ForKind("Pod")
	c := newDecodeCache(4)
	value, err := encode(&apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "ns"}})
	if err != nil {
		t.Fatal(err)
	}
	kv := &storepb.KeyValue{Key: []byte(k.Key("ns", "p")), Value: value, ModRevision: 7}
	a := c.envelope(k, kv, 7)
	if c.envelope(k, kv, 7) != a {
		t.Fatal("same record and revision built twice")
	}
	del := c.envelope(k, kv, 9) // the object as a deletion at revision 9 reports it
	if del == a {
		t.Fatal("another revision shared the envelope")
	}
	obj, _, err := reg().Unpack(del)
	if err != nil {
		t.Fatal(err)
	}
	if rv := obj.GetMetadata().GetResourceVersion(); rv != "9" || obj.GetMetadata().GetName() != "p" {
		t.Fatalf("envelope decodes to %q rv %q, want p at 9", obj.GetMetadata().GetName(), rv)
	}
}

func reg() *kinds.Registry { return kinds.NewRegistry() }
