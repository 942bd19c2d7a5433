package volume

import (
	"reflect"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

type tokenObjects struct {
	noObjects
	audiences []string
}

func (r *tokenObjects) ServiceAccountToken(aud string, exp int64) ([]byte, error) {
	r.audiences = append(r.audiences, aud)
	return []byte("tok-" + aud), nil
}

func (*tokenObjects) PodField(path string) (string, bool) {
	v, ok := map[string]string{"metadata.namespace": "shop"}[path]
	return v, ok
}

// The service account volume Kubernetes' admission adds (token, ca.crt
// from a ConfigMap, namespace from the downward API) becomes one
// directory of files; a source the node cannot resolve is refused with
// the field named.
func TestProjectedServiceAccountVolume(t *testing.T) {
	exp := int64(3607)
	v := &apiv1.Volume{Name: "kube-api-access", Projected: &apiv1.ProjectedVolumeSource{Sources: []*apiv1.VolumeProjection{
		{ServiceAccountToken: &apiv1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}},
		{ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "kube-root-ca.crt", Items: []*apiv1.KeyToPath{{Key: "a", Path: "ca.crt"}}}},
		{DownwardAPI: &apiv1.DownwardAPIVolumeSource{Items: []*apiv1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
	}}}
	r := &tokenObjects{}
	got, err := FromAPI("spec.volumes[0]", v, r)
	if err != nil {
		t.Fatal(err)
	}
	want := &Projected{Files: map[string][]byte{"token": []byte("tok-"), "ca.crt": []byte("1"), "namespace": []byte("shop")}}
	if !reflect.DeepEqual(got.Source, want) {
		t.Fatalf("got %+v, want %+v", got.Source, want)
	}
	if _, err := FromAPI("spec.volumes[0]", v, noObjects{}); err == nil || !strings.Contains(err.Error(), "sources[0].serviceAccountToken: this node cannot get service account tokens") {
		t.Errorf("without a token resolver: %v", err)
	}
	bad := &apiv1.Volume{Name: "x", Projected: &apiv1.ProjectedVolumeSource{Sources: []*apiv1.VolumeProjection{
		{DownwardAPI: &apiv1.DownwardAPIVolumeSource{Items: []*apiv1.DownwardAPIVolumeFile{{Path: "ip", FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}},
	}}}
	if _, err := FromAPI("spec.volumes[1]", bad, r); err == nil || !strings.Contains(err.Error(), `items[0].fieldRef.fieldPath "status.podIP"`) {
		t.Errorf("unsupported field: %v", err)
	}
	twice := &apiv1.Volume{Name: "y", Projected: &apiv1.ProjectedVolumeSource{Sources: []*apiv1.VolumeProjection{
		{ServiceAccountToken: &apiv1.ServiceAccountTokenProjection{Path: "a"}}, {ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "c"}},
	}}}
	if _, err := FromAPI("spec.volumes[2]", twice, r); err == nil || !strings.Contains(err.Error(), `file "a" projected twice`) {
		t.Errorf("duplicate file: %v", err)
	}
}
