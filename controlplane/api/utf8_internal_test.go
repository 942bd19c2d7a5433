package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// typicalPod is a pod as a ReplicaSet controller creates it, after
// defaults: what the scheduler benchmark creates and binds by the
// thousand.
func typicalPod() *apiv1.Pod {
	return &apiv1.Pod{ApiVersion: "v1", Kind: "Pod",
		Metadata: &apiv1.ObjectMeta{Name: "web-7d9f8c6b5d-x2k4q", GenerateName: "web-7d9f8c6b5d-", Namespace: "default",
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5d", "tier": "frontend"},
			Annotations: map[string]string{"kubernetes.io/config.seen": "2026-12-03T09:00:00Z", "note": "grüße, 世界"},
			OwnerReferences: []*apiv1.OwnerReference{{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5d",
				Uid: "5c1e2f0a-8d3b-4b6e-9f1a-2c3d4e5f6a7b", Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true)}}},
		Spec: &apiv1.PodSpec{
			Containers: []*apiv1.Container{{Name: "web", Image: "registry.local/web:1.4.2",
				Args:  []string{"--port=8080", "--log-level=info"},
				Ports: []*apiv1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}},
				Env:   []*apiv1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "CACHE_SIZE", Value: "256"}},
				Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": "100m", "memory": "128Mi"},
					Limits: map[string]string{"memory": "256Mi"}},
				VolumeMounts:             []*apiv1.VolumeMount{{Name: "cache", MountPath: "/var/cache/web"}},
				TerminationMessagePath:   "/dev/termination-log",
				TerminationMessagePolicy: "File", ImagePullPolicy: "IfNotPresent"}},
			Volumes:            []*apiv1.Volume{{Name: "cache", EmptyDir: &apiv1.EmptyDirVolumeSource{}}},
			RestartPolicy:      "Always",
			DnsPolicy:          "ClusterFirst",
			SchedulerName:      "default-scheduler",
			ServiceAccountName: "default",
			Tolerations: []*apiv1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(300)},
				{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(300)}}},
		Status: &apiv1.PodStatus{Phase: "Pending"}}
}

// checkWire runs the check as unpack does: on the wire bytes and the
// message decoded from them.
func checkWire(t testing.TB, obj kinds.Object) error {
	t.Helper()
	reg := kinds.NewRegistry()
	k, err := reg.ForObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := codec.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	decoded := k.New()
	if err := codec.UnmarshalAliasing(wire, decoded); err != nil {
		t.Fatal(err)
	}
	return checkUTF8(k, wire, decoded)
}

func TestUTF8CheckNamesTheField(t *testing.T) {
	bad := "ok\xffthen"
	cases := []struct {
		name string
		obj  kinds.Object
		path string
	}{
		{"annotation value", func() kinds.Object {
			p := typicalPod()
			p.Metadata.Annotations["x"] = bad
			return p
		}(), `metadata.annotations["x"]`},
		{"label key", func() kinds.Object {
			p := typicalPod()
			p.Metadata.Labels[bad] = "v"
			return p
		}(), `metadata.labels["ok\xffthen"]`},
		{"nested repeated", func() kinds.Object {
			p := typicalPod()
			p.Spec.Containers[0].Env[1].Value = bad
			return p
		}(), `spec.containers[0].env[1].value`},
		{"repeated string", func() kinds.Object {
			p := typicalPod()
			p.Spec.Containers[0].Args = append(p.Spec.Containers[0].Args, bad)
			return p
		}(), `spec.containers[0].args[2]`},
		{"configmap data", &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default"},
			Data: map[string]string{"good": "fine", "key": bad}}, `data["key"]`},
		{"event message", &apiv1.Event{Metadata: &apiv1.ObjectMeta{Name: "ev", Namespace: "default"},
			InvolvedObject: &apiv1.ObjectReference{Kind: "Pod", Name: "p"}, Reason: "Started", Message: bad}, `message`},
	}
	for _, c := range cases {
		err := checkWire(t, c.obj)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", c.name, err)
		}
		// The message carries the path with the invalid byte escaped:
		// it must itself be printable.
		msg := err.Error()
		want := strings.ReplaceAll(c.path, "\xff", `\xff`)
		if !strings.Contains(msg, want+": ") || !strings.Contains(msg, "not valid UTF-8") {
			t.Errorf("%s: error %q does not name %s", c.name, msg, want)
		}
		if !strings.Contains(msg, `\xff`) || strings.Contains(msg, "\xff") {
			t.Errorf("%s: error %q should show the bad byte escaped", c.name, msg)
		}
	}
}

func TestUTF8CheckAcceptsValidAndBytes(t *testing.T) {
	p := typicalPod()
	p.Metadata.Annotations["emoji"] = "🚢 ß ç 日本語 \u00a0"
	if err := checkWire(t, p); err != nil {
		t.Fatalf("valid multi-byte UTF-8: %v", err)
	}
	// bytes fields carry anything: Secret data, ConfigMap binaryData.
	s := &apiv1.Secret{Metadata: &apiv1.ObjectMeta{Name: "s", Namespace: "default"}, Data: map[string][]byte{"key": {0xff, 0xfe, 0}}}
	if err := checkWire(t, s); err != nil {
		t.Fatalf("binary secret data: %v", err)
	}
	cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default"}, BinaryData: map[string][]byte{"blob": {0xff}}}
	if err := checkWire(t, cm); err != nil {
		t.Fatalf("binary configmap data: %v", err)
	}
}

func TestPatchUTF8(t *testing.T) {
	if err := checkPatchUTF8([]byte(`{"metadata":{"annotations":{"a":"日本"}}}`)); err != nil {
		t.Fatal(err)
	}
	err := checkPatchUTF8([]byte("{\"metadata\":{\"annotations\":{\"a\":\"\xff\"}}}"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "offset 33") {
		t.Fatalf("invalid patch: %v", err)
	}
}

// A recursive message (google.protobuf.Struct: Struct → Value → ListValue
// → Value → Struct) is planned without looping, and a string at any depth
// of it is checked.
func TestUTF8PlanOfRecursiveMessage(t *testing.T) {
	msg := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	structOf := func(key string, value []byte) []byte { return field(1, msg(field(1, []byte(key)), field(2, value))) }
	nested := func(s string) []byte {
		str := field(3, []byte(s))             // Value.string_value
		list := field(6, field(1, str))        // Value.list_value{values: [str]}
		inner := field(5, structOf("b", list)) // Value.struct_value{"b": list}
		return structOf("a", inner)            // Struct{"a": inner}
	}
	plan := planFor((&structpb.Struct{}).ProtoReflect().Descriptor())
	if !plan.validUTF8(nested("fine, 日本"), 0) {
		t.Fatal("valid nested string refused")
	}
	if plan.validUTF8(nested("bad \xff"), 0) {
		t.Fatal("invalid string three levels down accepted")
	}
}

// BenchmarkUTF8CheckPod is the check's cost per pod on the create path
// (BENCHMARKS.md "UTF-8 check"); the reflection walk and the decode it
// follows are there for scale.
func BenchmarkUTF8CheckPod(b *testing.B) {
	p := typicalPod()
	k, err := kinds.NewRegistry().ForObject(p)
	if err != nil {
		b.Fatal(err)
	}
	wire, err := codec.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	decoded := k.New()
	if err := codec.UnmarshalAliasing(wire, decoded); err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := checkUTF8(k, wire, decoded); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflect", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := checkObjectUTF8(k, decoded); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := codec.UnmarshalAliasing(wire, k.New()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
