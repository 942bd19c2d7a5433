package volume

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

type claims struct {
	noObjects
	paths map[string]string
}

func (c claims) ClaimPath(name string) (string, bool, error) {
	p, ok := c.paths[name]
	if !ok {
		return "", false, errors.New("claim is not bound to a volume yet")
	}
	return p, strings.Contains(p, "provisioned"), nil
}

// A claim volume resolves to its bound volume's directory: a provisioned
// one is made, a static one must exist; the record round-trips; an
// unbound claim or a resolver without claims is an error naming the volume.
func TestClaimVolume(t *testing.T) {
	dir := t.TempDir()
	prov := filepath.Join(dir, "provisioned", "pvc-1")
	static := filepath.Join(dir, "static")
	r := claims{paths: map[string]string{"data": prov, "old": static}}
	api := func(claim string) *apiv1.Volume {
		return &apiv1.Volume{Name: "v", PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}
	}
	v, err := FromAPI("spec.volumes[0] \"v\"", api("data"), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate("v"); err != nil {
		t.Fatal(err)
	}
	if err := v.Source.Prepare(""); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(prov); err != nil || !st.IsDir() {
		t.Fatalf("provisioned directory not made: %v", err)
	}
	if src, ro := v.Source.Mount(""); src != prov || ro {
		t.Errorf("Mount = %s %v, want %s read-write", src, ro, prov)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back Volume
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("record %s reads back as %+v (%v)", b, back, err)
	}

	s, err := FromAPI("spec.volumes[1] \"v\"", api("old"), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Source.Prepare(""); err == nil || !strings.Contains(err.Error(), `claim "old"`) {
		t.Errorf("static volume missing: Prepare = %v, want an error naming the claim", err)
	}
	if _, err := FromAPI("spec.volumes[2] \"v\"", api("unbound"), r); err == nil || !strings.Contains(err.Error(), `spec.volumes[2] "v".persistentVolumeClaim "unbound"`) {
		t.Errorf("unbound claim: %v", err)
	}
	if _, err := FromAPI("spec.volumes[3] \"v\"", api("data"), noObjects{}); !errors.Is(err, ErrClaimNotSupported) {
		t.Errorf("resolver without claims: %v, want ErrClaimNotSupported", err)
	}
}
