package volume

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

type noObjects struct{}

func (noObjects) ConfigMap(string) (map[string][]byte, error) {
	return map[string][]byte{"a": []byte("1"), "b": []byte("2")}, nil
}
func (noObjects) Secret(string) (map[string][]byte, error) {
	return map[string][]byte{"pw": []byte("x")}, nil
}
func (noObjects) IsNotFound(error) bool { return false }

// A pod record written before volume types were registered hooks
// ({"name":…,"emptyDir":{…}}, Kubernetes' shape) still loads, and writes
// back the same way.
func TestRecordFormatUnchanged(t *testing.T) {
	old := `[{"name":"work","emptyDir":{"medium":"Memory","sizeLimit":1024}},` +
		`{"name":"host","hostPath":{"path":"/srv","type":"Directory"}},` +
		`{"name":"cfg","configMap":{"name":"cfg","files":{"k":"dg=="}}},` +
		`{"name":"sec","secret":{"secretName":"s","files":{"pw":"eA=="},"defaultMode":256}}]`
	var vols []Volume
	if err := json.Unmarshal([]byte(old), &vols); err != nil {
		t.Fatal(err)
	}
	mode := int32(256)
	want := []Volume{
		{Name: "work", Source: &EmptyDir{Medium: "Memory", SizeLimit: 1024}},
		{Name: "host", Source: &HostPath{Path: "/srv", Type: "Directory"}},
		{Name: "cfg", Source: &ConfigMap{Name: "cfg", Files: map[string][]byte{"k": []byte("v")}}},
		{Name: "sec", Source: &Secret{SecretName: "s", Files: map[string][]byte{"pw": []byte("x")}, DefaultMode: &mode}},
	}
	if !reflect.DeepEqual(vols, want) {
		t.Fatalf("decoded %+v, want %+v", vols, want)
	}
	b, err := json.Marshal(vols)
	if err != nil {
		t.Fatal(err)
	}
	var again []Volume
	if err := json.Unmarshal(b, &again); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip %s: %+v, %v", b, again, err)
	}
	for _, bad := range []string{`{"name":"x","nfs":{}}`, `{"name":"x","emptyDir":{},"hostPath":{"path":"/"}}`} {
		var v Volume
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s decoded as %+v", bad, v)
		}
	}
}

// Bad sources are refused with the field named.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		v    Volume
		want string
	}{
		{Volume{Name: "x"}, `volumes[0] "x": no source: one of configMap, downwardAPI, emptyDir, hostPath, persistentVolumeClaim, projected, secret must be set`},
		{Volume{Name: "x", Source: &HostPath{Path: "rel"}}, `volumes[0] "x".hostPath.path "rel": must be absolute`},
		{Volume{Name: "x", Source: &HostPath{Path: "/a", Type: "Socket"}}, `volumes[0] "x".hostPath.type "Socket"`},
		{Volume{Name: "x", Source: &EmptyDir{Medium: "Disk"}}, `volumes[0] "x".emptyDir.medium "Disk"`},
		{Volume{Name: "x", Source: &ConfigMap{Files: map[string][]byte{"sub/../../etc": nil}}}, `volumes[0] "x".configMap: key "sub/../../etc" is not a file name`},
		{Volume{Name: "x", Source: &Secret{Files: map[string][]byte{"..": nil}}}, `volumes[0] "x".secret: key ".." is not a file name`},
	} {
		err := c.v.Validate(`volumes[0] "x"`)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.v, err, c.want)
		}
	}
}

// The hooks that need no root: a disk emptyDir and a configMap are
// prepared, mounted read-write and read-only, and torn down.
func TestHooksWithoutRoot(t *testing.T) {
	dir := t.TempDir()
	r := noObjects{}
	ed, err := FromAPI("v", &apiv1.Volume{Name: "work", EmptyDir: &apiv1.EmptyDirVolumeSource{}}, r)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := FromAPI("v", &apiv1.Volume{Name: "cfg", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "cfg",
		Items: []*apiv1.KeyToPath{{Key: "b", Path: "b.txt"}}}}, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []Volume{ed, cm} {
		d := filepath.Join(dir, v.Name)
		if err := v.Source.Prepare(d); err != nil {
			t.Fatalf("%s: prepare: %v", v.Name, err)
		}
		src, ro := v.Source.Mount(d)
		if src != d || ro != (v.Name == "cfg") {
			t.Errorf("%s: mount %s read-only=%v", v.Name, src, ro)
		}
		if err := v.Source.TearDown(d); err != nil {
			t.Errorf("%s: tear down: %v", v.Name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cfg", "b.txt")); err != nil || string(b) != "2" {
		t.Fatalf("configMap item b.txt: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cfg", "a")); !os.IsNotExist(err) {
		t.Fatalf("configMap key a not in items, yet written: %v", err)
	}
}

// scratch is a volume type as a test adds it: one declaration and one
// Register call, and the agent converts, stores and validates it.
type scratch struct {
	Server string `json:"server"`
}

func (*scratch) VolumeType() string { return "nfs" }
func (s *scratch) Validate(field string) error {
	if s.Server == "" {
		return &os.PathError{Op: "validate", Path: field + ".server", Err: os.ErrInvalid}
	}
	return nil
}
func (*scratch) Prepare(string) error              { return nil }
func (s *scratch) Mount(dir string) (string, bool) { return dir, false }
func (*scratch) TearDown(string) error             { return nil }

func TestRegisteredTypeIsConvertedAndStored(t *testing.T) {
	Register(Type{Name: "nfs", New: func() Source { return &scratch{} },
		FromAPI: func(_ string, v *apiv1.Volume, _ Resolver) (Source, error) {
			if v.GetNfs() == nil {
				return nil, nil
			}
			return &scratch{Server: v.GetNfs().GetServer()}, nil
		}})
	t.Cleanup(func() { delete(types, "nfs") })
	v, err := FromAPI("spec.volumes[0]", &apiv1.Volume{Name: "share", Nfs: &apiv1.NFSVolumeSource{Server: "files", Path: "/x"}}, noObjects{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate("volumes[0]"); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	var back Volume
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("stored as %s, loaded %+v, %v", b, back, err)
	}
}
