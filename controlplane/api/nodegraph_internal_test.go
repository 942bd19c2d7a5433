package api

import (
	"fmt"
	"slices"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Every way a pod spec names a Secret, ConfigMap or claim is indexed, in
// the pod's namespace, for the node it is bound to; an unbound pod grants
// nothing.
func TestPodRefsFindsEveryReference(t *testing.T) {
	opt := true
	spec := &apiv1.PodSpec{
		NodeName:         "w1",
		ImagePullSecrets: []*apiv1.LocalObjectReference{{Name: "pull"}},
		Volumes: []*apiv1.Volume{
			{Name: "a", Secret: &apiv1.SecretVolumeSource{SecretName: "vol-secret"}},
			{Name: "b", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "vol-cm"}},
			{Name: "c", PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}},
			{Name: "d", Projected: &apiv1.ProjectedVolumeSource{Sources: []*apiv1.VolumeProjection{
				{Secret: &apiv1.SecretProjection{Name: "proj-secret"}},
				{ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "proj-cm"}},
				{ServiceAccountToken: &apiv1.ServiceAccountTokenProjection{Path: "token"}},
			}}},
			{Name: "e", EmptyDir: &apiv1.EmptyDirVolumeSource{}},
		},
		InitContainers: []*apiv1.Container{{Name: "init",
			EnvFrom: []*apiv1.EnvFromSource{{SecretRef: &apiv1.NameOptional{Name: "init-envfrom-secret"}}}}},
		Containers: []*apiv1.Container{{Name: "main",
			EnvFrom: []*apiv1.EnvFromSource{{ConfigMapRef: &apiv1.NameOptional{Name: "envfrom-cm", Optional: &opt}}},
			Env: []*apiv1.EnvVar{
				{Name: "A", ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.KeySelector{Name: "env-secret", Key: "k"}}},
				{Name: "B", ValueFrom: &apiv1.EnvVarSource{ConfigMapKeyRef: &apiv1.KeySelector{Name: "env-cm", Key: "k"}}},
				{Name: "C", ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.KeySelector{Name: "vol-secret", Key: "k"}}}, // once
				{Name: "D", Value: "literal"},
			}}},
	}
	pod, err := codec.Marshal(&apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: spec,
		Status: &apiv1.PodStatus{Phase: "Running"}})
	if err != nil {
		t.Fatal(err)
	}
	specBytes, err := podSpecBytes(pod)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := podRefs("/registry/pods/shop/web", "/registry/pods/", specBytes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		if r.node != "w1" || r.namespace != "shop" {
			t.Errorf("ref %+v: want node w1, namespace shop", r)
		}
		got = append(got, r.kind+" "+r.name)
	}
	slices.Sort(got)
	want := []string{"ConfigMap env-cm", "ConfigMap envfrom-cm", "ConfigMap proj-cm", "ConfigMap vol-cm",
		"PersistentVolumeClaim data",
		"Secret env-secret", "Secret init-envfrom-secret", "Secret proj-secret", "Secret pull", "Secret vol-secret"}
	if !slices.Equal(got, want) {
		t.Errorf("refs:\n got %q\nwant %q", got, want)
	}

	spec.NodeName = ""
	unbound, _ := codec.Marshal(&apiv1.Pod{Spec: spec})
	specBytes, _ = podSpecBytes(unbound)
	if refs, err := podRefs("/registry/pods/shop/web", "/registry/pods/", specBytes); err != nil || len(refs) != 0 {
		t.Errorf("unbound pod: refs %v, err %v; want none", refs, err)
	}
}

func benchPods(b *testing.B, n int) []*storepb.KeyValue {
	b.Helper()
	kvs := make([]*storepb.KeyValue, n)
	for i := range kvs {
		name := fmt.Sprintf("web-%d", i)
		v, err := codec.Marshal(&apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": "web"}},
			Spec: &apiv1.PodSpec{NodeName: fmt.Sprintf("w%d", i%100),
				Volumes: []*apiv1.Volume{{Name: "cfg", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "web-config"}}},
				Containers: []*apiv1.Container{{Name: "c", Image: "registry.local/web:1.0",
					Env: []*apiv1.EnvVar{{Name: "T", ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.KeySelector{Name: "web-token", Key: "t"}}}}}}},
			Status: &apiv1.PodStatus{Phase: "Running", PodIP: "10.0.0.1"}})
		if err != nil {
			b.Fatal(err)
		}
		kvs[i] = &storepb.KeyValue{Key: []byte("/registry/pods/shop/" + name), Value: v}
	}
	return kvs
}

// BenchmarkNodeGraphPut is the graph's cost per pod write on every control
// node: a bound pod seen for the first time (decode + index), and a write
// that leaves the spec alone (a status update: hash only).
func BenchmarkNodeGraphPut(b *testing.B) {
	kvs := benchPods(b, 10000)
	b.Run("NewBinding", func(b *testing.B) {
		g := NewNodeGraph(nil, nil, nil)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if i%len(kvs) == 0 {
				g.byPod, g.refs = map[string]graphPod{}, map[graphRef]int{}
			}
			g.putLocked(kvs[i%len(kvs)])
		}
	})
	b.Run("StatusOnly", func(b *testing.B) {
		g := NewNodeGraph(nil, nil, nil)
		for _, kv := range kvs {
			g.putLocked(kv)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			g.putLocked(kvs[i%len(kvs)])
		}
	})
}
