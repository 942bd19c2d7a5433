package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// An update replaces the whole set through one symlink switch: keys are
// links into ..data, a removed key disappears, the old data dir goes, and
// a reader holding the old dir's file sees the old content.
func TestAtomicWriteFiles(t *testing.T) {
	dir := t.TempDir()
	if err := atomicWriteFiles(dir, map[string][]byte{"a": []byte("1"), "b": []byte("2")}, 0o640); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(filepath.Join(dir, "a")); err != nil || tgt != "..data/a" {
		t.Fatalf("key a is %q %v, want a link to ..data/a", tgt, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))
	st, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	if err := atomicWriteFiles(dir, map[string][]byte{"a": []byte("10"), "c": []byte("3")}, 0o644); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"a": "10", "c": "3"} {
		if b, err := os.ReadFile(filepath.Join(dir, k)); err != nil || string(b) != want {
			t.Errorf("%s = %q %v, want %q", k, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "b")); !os.IsNotExist(err) {
		t.Errorf("removed key b still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old data dir %s not removed: %v", first, err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 4 || !strings.HasPrefix(names[0], "..2") || names[1] != "..data" || names[2] != "a" || names[3] != "c" {
		t.Errorf("dir holds %v", names)
	}
	if err := (&ConfigMap{Files: map[string][]byte{"..data": nil}}).Validate("v"); err == nil {
		t.Error("a key named ..data accepted")
	}
}

type downwardRes struct{ noObjects }

func (downwardRes) DownwardField(path string) (string, error) { return "f:" + path, nil }
func (downwardRes) DownwardResource(sel *apiv1.ResourceFieldSelector) (string, error) {
	return "r:" + sel.GetContainerName() + "/" + sel.GetResource(), nil
}

func TestDownwardAPIFromAPI(t *testing.T) {
	v := &apiv1.Volume{Name: "info", DownwardAPI: &apiv1.DownwardAPIVolumeSource{Items: []*apiv1.DownwardAPIVolumeFile{
		{Path: "labels", FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		{Path: "mem", ResourceFieldRef: &apiv1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory"}},
	}}}
	got, err := FromAPI(`spec.volumes[0] "info"`, v, downwardRes{})
	if err != nil {
		t.Fatal(err)
	}
	f := got.Source.(*DownwardAPI).Files
	if string(f["labels"]) != "f:metadata.labels" || string(f["mem"]) != "r:app/limits.memory" {
		t.Errorf("files %q", f)
	}
	for _, c := range []struct {
		item *apiv1.DownwardAPIVolumeFile
		want string
	}{
		{&apiv1.DownwardAPIVolumeFile{Path: "ip", FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "status.podIP"}}, `items[0].fieldRef.fieldPath "status.podIP"`},
		{&apiv1.DownwardAPIVolumeFile{Path: filepath.Join("..", "x"), FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "metadata.name"}}, `items[0].path "` + filepath.Join("..", "x") + `"`},
		{&apiv1.DownwardAPIVolumeFile{Path: "m", ResourceFieldRef: &apiv1.ResourceFieldSelector{Resource: "limits.cpu"}}, `items[0].resourceFieldRef.containerName: required`},
	} {
		v.DownwardAPI.Items = []*apiv1.DownwardAPIVolumeFile{c.item}
		if _, err := FromAPI(`spec.volumes[0] "info"`, v, downwardRes{}); err == nil || !strings.Contains(err.Error(), `spec.volumes[0] "info".downwardAPI.`+c.want) {
			t.Errorf("%v: got %v, want %q", c.item, err, c.want)
		}
	}
	if _, err := FromAPI("v", v, noObjects{}); err == nil {
		t.Error("a resolver without the downward API accepted")
	}
}
