package codec

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func samplePod() *apiv1.Pod {
	return &apiv1.Pod{
		Metadata: &apiv1.ObjectMeta{Name: "web-1", Namespace: "default", Uid: "u-1",
			Labels:          map[string]string{"app": "web", "tier": "front"},
			OwnerReferences: []*apiv1.OwnerReference{{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", Uid: "u-rs"}}},
		Spec: &apiv1.PodSpec{NodeName: "n1", Containers: []*apiv1.Container{{Name: "web", Image: "nginx",
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": "100m", "memory": "64Mi"}}}}},
		Status: &apiv1.PodStatus{Phase: "Running"},
	}
}

func TestGRPCCodecIsOurs(t *testing.T) {
	if _, ok := encoding.GetCodecV2("proto").(grpcCodec); !ok {
		t.Fatalf("gRPC's proto codec is %T, want codec.grpcCodec (init order?)", encoding.GetCodecV2("proto"))
	}
}

// The generated code and protobuf-go read each other's bytes.
func TestRoundTripsAgreeWithProtobufGo(t *testing.T) {
	pod := samplePod()
	ours, err := Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	theirs, _ := proto.Marshal(pod)
	if len(ours) != len(theirs) {
		t.Fatalf("sizes differ: %d vs %d", len(ours), len(theirs))
	}
	for name, decode := range map[string]func([]byte, proto.Message) error{
		"Unmarshal": Unmarshal, "UnmarshalAliasing": UnmarshalAliasing, "proto.Unmarshal": proto.Unmarshal,
	} {
		for _, b := range [][]byte{ours, theirs} {
			got := &apiv1.Pod{}
			if err := decode(b, got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !proto.Equal(got, pod) {
				t.Fatalf("%s: got %v, want %v", name, got, pod)
			}
		}
	}
	c := Clone(pod)
	if !proto.Equal(c, pod) || c == pod || c.Metadata == pod.Metadata {
		t.Fatal("Clone is not a deep copy")
	}
	c.Metadata.Labels["app"] = "changed"
	if pod.Metadata.Labels["app"] != "web" {
		t.Fatal("Clone shares the labels map")
	}
	// Without generated code: protobuf-go.
	d := durationpb.New(5)
	b, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back durationpb.Duration
	if err := Unmarshal(b, &back); err != nil || !proto.Equal(&back, d) || !proto.Equal(Clone(d), d) {
		t.Fatalf("fallback round trip: %v %v", &back, err)
	}
}

// Decoding merges, as protobuf parsers merge repeated occurrences.
func TestUnmarshalMerges(t *testing.T) {
	a, _ := Marshal(&apiv1.ObjectMeta{Name: "a", Labels: map[string]string{"x": "1"}})
	b, _ := Marshal(&apiv1.ObjectMeta{ResourceVersion: "7", Labels: map[string]string{"y": "2"}})
	for _, decode := range []func([]byte, proto.Message) error{Unmarshal, UnmarshalAliasing} {
		md := &apiv1.ObjectMeta{}
		if err := decode(a, md); err != nil {
			t.Fatal(err)
		}
		if err := decode(b, md); err != nil {
			t.Fatal(err)
		}
		if md.Name != "a" || md.ResourceVersion != "7" || len(md.Labels) != 2 {
			t.Fatalf("merged = %v", md)
		}
	}
}

// An aliased bytes field cannot be appended to in place: the append must
// copy, leaving the buffer the value came from untouched.
func TestAliasedBytesAppendCopies(t *testing.T) {
	b, _ := Marshal(&apiv1.Secret{Metadata: &apiv1.ObjectMeta{Name: "s"},
		Data: map[string][]byte{"k": []byte("abc")}, Type: "Opaque"})
	orig := bytes.Clone(b)
	var s apiv1.Secret
	if err := UnmarshalAliasing(b, &s); err != nil {
		t.Fatal(err)
	}
	v := s.Data["k"]
	if cap(v) != len(v) {
		t.Fatalf("aliased value has capacity %d beyond its length %d (make proto's sed step missing?)", cap(v), len(v))
	}
	_ = append(v, "XYZXYZXYZ"...)
	if !bytes.Equal(b, orig) {
		t.Fatal("appending to a decoded value wrote into the source buffer")
	}
	// The same for the store's messages (the FSM decodes Raft entries
	// aliasing them): a put's key and value, followed by more bytes.
	cmd, _ := Marshal(&storepb.PutRequest{Key: []byte("/k"), Value: []byte("value"), IfModRevision: proto.Int64(7)})
	origCmd := bytes.Clone(cmd)
	var put storepb.PutRequest
	if err := UnmarshalAliasing(cmd, &put); err != nil {
		t.Fatal(err)
	}
	for _, f := range [][]byte{put.Key, put.Value} {
		if cap(f) != len(f) {
			t.Fatalf("aliased store field %q has capacity %d beyond its length %d", f, cap(f), len(f))
		}
		_ = append(f, "XYZXYZXYZ"...)
	}
	if !bytes.Equal(cmd, origCmd) {
		t.Fatal("appending to a decoded store field wrote into the Raft entry")
	}
}

func TestPackUnpack(t *testing.T) {
	pod := samplePod()
	a, err := Pack(pod)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := anypb.New(pod)
	if a.TypeUrl != want.TypeUrl {
		t.Fatalf("type URL %q, want %q", a.TypeUrl, want.TypeUrl)
	}
	m, err := Unpack(want)
	if err != nil || !proto.Equal(m, pod) {
		t.Fatalf("Unpack = %v, %v", m, err)
	}
	if _, err := Unpack(&anypb.Any{TypeUrl: "type.googleapis.com/no.Such"}); err == nil {
		t.Fatal("unknown type unpacked")
	}
	if _, err := Unpack(&anypb.Any{TypeUrl: a.TypeUrl, Value: []byte{0xff}}); err == nil {
		t.Fatal("garbage unpacked")
	}
}

func TestGRPCCodecRoundTrip(t *testing.T) {
	c := grpcCodec{}
	for _, size := range []int{1, 4 << 10} { // below and above gRPC's pooling threshold
		in := &storepb.KeyValue{Key: []byte("/k"), Value: bytes.Repeat([]byte("v"), size), ModRevision: 9}
		data, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out storepb.KeyValue
		out.Version = 3 // a reused message is reset first
		if err := c.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
		data.Free()
		if !proto.Equal(&out, in) {
			t.Fatalf("size %d: round trip gave %v", size, &out)
		}
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshalled a string")
	}
	if err := c.Unmarshal(mem.BufferSlice{}, 3); err == nil {
		t.Fatal("unmarshalled into an int")
	}
}
