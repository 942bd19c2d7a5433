package compat_test

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/compat"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// The generated packages register their descriptors in GlobalFiles.
var (
	_ = apiv1.File_api_v1_api_service_proto
	_ = adminv1.File_admin_v1_admin_proto
	_ = streamv1.File_stream_v1_stream_proto
)

// published pairs each committed baseline with the package it publishes.
var published = []struct {
	file string
	pkg  protoreflect.FullName
}{
	{"api-v1.binpb", "skiff.api.v1"},
	{"admin-v1.binpb", "skiff.admin.v1"},
	{"stream-v1.binpb", "skiff.stream.v1"},
}

// TestCurrentAPIIsCompatibleWithPublished is the check `make test` runs:
// the API compiled into this tree against the committed baselines.
func TestCurrentAPIIsCompatibleWithPublished(t *testing.T) {
	for _, p := range published {
		base, err := compat.LoadSet(p.file)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		base.RangeFilesByPackage(p.pkg, func(protoreflect.FileDescriptor) bool { n++; return true })
		if n == 0 {
			t.Fatalf("%s holds no file of package %s: the check would pass vacuously", p.file, p.pkg)
		}
		for _, b := range compat.Check(base, protoregistry.GlobalFiles, p.pkg) {
			t.Errorf("%s: breaking change against %s: %s", p.pkg, p.file, b)
		}
	}
}

// loadRaw reads the API baseline as a descriptor set to mutate.
func loadRaw(t *testing.T) *descriptorpb.FileDescriptorSet {
	t.Helper()
	data, err := os.ReadFile("api-v1.binpb")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	return &set
}

func findFile(t *testing.T, set *descriptorpb.FileDescriptorSet, name string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	for _, f := range set.File {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("baseline has no file %s", name)
	return nil
}

func findMessage(t *testing.T, f *descriptorpb.FileDescriptorProto, name string) *descriptorpb.DescriptorProto {
	t.Helper()
	for _, m := range f.MessageType {
		if m.GetName() == name {
			return m
		}
	}
	t.Fatalf("%s has no message %s", f.GetName(), name)
	return nil
}

func findField(t *testing.T, m *descriptorpb.DescriptorProto, name string) *descriptorpb.FieldDescriptorProto {
	t.Helper()
	for _, f := range m.Field {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("message %s has no field %s", m.GetName(), name)
	return nil
}

func apiService(t *testing.T, set *descriptorpb.FileDescriptorSet) *descriptorpb.ServiceDescriptorProto {
	t.Helper()
	return findFile(t, set, "api/v1/api_service.proto").Service[0]
}

func removeMethod(t *testing.T, set *descriptorpb.FileDescriptorSet, name string) {
	t.Helper()
	svc := apiService(t, set)
	for i, m := range svc.Method {
		if m.GetName() == name {
			svc.Method = append(svc.Method[:i], svc.Method[i+1:]...)
			return
		}
	}
	t.Fatalf("API has no method %s", name)
}

// TestCheckRefusesBreakingChanges runs the check against fixtures made from
// the baseline with one deliberate change each: the breaking ones must be
// reported (naming the element), the compatible ones must pass.
func TestCheckRefusesBreakingChanges(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, set *descriptorpb.FileDescriptorSet)
		want   string // "" for a compatible change
	}{
		{"RenumberedField", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			f := findField(t, findMessage(t, findFile(t, set, "api/v1/meta.proto"), "ObjectMeta"), "resourceVersion")
			f.Number = proto.Int32(55)
		}, "skiff.api.v1.ObjectMeta.resourceVersion (field 5): field renumbered 5 → 55"},
		{"RemovedField", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			m := findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "ListRequest")
			for i, f := range m.Field {
				if f.GetName() == "continue" {
					m.Field = append(m.Field[:i], m.Field[i+1:]...)
				}
			}
		}, "skiff.api.v1.ListRequest.continue (field 6): field removed"},
		{"ChangedFieldType", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			f := findField(t, findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "ListRequest"), "limit")
			f.Type = descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
		}, "skiff.api.v1.ListRequest.limit (field 5): field type changed from int64 to string"},
		{"RenamedField", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			f := findField(t, findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "WatchRequest"), "resource_version")
			f.Name, f.JsonName = proto.String("revision"), proto.String("revision")
		}, "skiff.api.v1.WatchRequest.resource_version (field 6): field renamed to revision"},
		{"SingularBecameRepeated", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			f := findField(t, findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "GetRequest"), "name")
			f.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		}, "field type changed from string to repeated string"},
		{"RemovedMethod", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			removeMethod(t, set, "Patch")
		}, "skiff.api.v1.API.Patch: method removed"},
		{"WatchNoLongerStreams", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			for _, m := range apiService(t, set).Method {
				if m.GetName() == "Watch" {
					m.ServerStreaming = proto.Bool(false)
				}
			}
		}, "skiff.api.v1.API.Watch: streaming changed"},
		{"RemovedEnumValue", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			e := findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "WatchEvent").EnumType[0]
			e.Value = e.Value[:2] // drop DELETED
		}, "skiff.api.v1.WatchEvent.DELETED (value 2): enum value removed"},
		{"RemovedFieldWithNumberReserved", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			m := findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "GetRequest")
			for i, f := range m.Field {
				if f.GetName() == "stale" {
					m.Field = append(m.Field[:i], m.Field[i+1:]...)
				}
			}
			m.ReservedRange = append(m.ReservedRange, &descriptorpb.DescriptorProto_ReservedRange{Start: proto.Int32(4), End: proto.Int32(5)})
			m.ReservedName = append(m.ReservedName, "stale")
		}, ""},
		{"AddedFieldAndMethod", func(t *testing.T, set *descriptorpb.FileDescriptorSet) {
			m := findMessage(t, findFile(t, set, "api/v1/api_service.proto"), "GetRequest")
			m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{Name: proto.String("extra"), JsonName: proto.String("extra"),
				Number: proto.Int32(40), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()})
			svc := apiService(t, set)
			svc.Method = append(svc.Method, &descriptorpb.MethodDescriptorProto{Name: proto.String("Extra"),
				InputType: proto.String(".skiff.api.v1.GetRequest"), OutputType: proto.String(".skiff.api.v1.Object")})
		}, ""},
	}
	base, err := compat.LoadSet("api-v1.binpb")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := loadRaw(t)
			tc.mutate(t, set)
			cur, err := compat.FilesOf(set, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			breaks := compat.Check(base, cur, "skiff.api.v1")
			if tc.want == "" {
				for _, b := range breaks {
					t.Errorf("compatible change reported as breaking: %s", b)
				}
				return
			}
			if len(breaks) != 1 || !strings.Contains(breaks[0].String(), tc.want) {
				t.Fatalf("want exactly one break containing %q, got %v", tc.want, breaks)
			}
		})
	}
}
