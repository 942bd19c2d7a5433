package kinds

import (
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func validateAs(t *testing.T, kind string, obj Object) string {
	t.Helper()
	k, ok := NewRegistry().ForKind(kind)
	if !ok {
		t.Fatalf("%s not registered", kind)
	}
	k.Default(obj)
	if errs := k.Validate(obj); len(errs) > 0 {
		return errs.Error()
	}
	return ""
}

func TestValidateStorageKinds(t *testing.T) {
	s := func(v string) *string { return &v }
	md := func() *apiv1.ObjectMeta { return &apiv1.ObjectMeta{Name: "x"} }
	nsmd := func() *apiv1.ObjectMeta { return &apiv1.ObjectMeta{Name: "x", Namespace: "default"} }
	onNode := &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{
		MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"n1"}}}}}}}
	pvSpec := func(f func(*apiv1.PersistentVolumeSpec)) *apiv1.PersistentVolumeSpec {
		sp := &apiv1.PersistentVolumeSpec{Capacity: map[string]string{"storage": "1Gi"}, AccessModes: []string{"ReadWriteOnce"},
			HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/x"}}
		if f != nil {
			f(sp)
		}
		return sp
	}
	claimSpec := func(f func(*apiv1.PersistentVolumeClaimSpec)) *apiv1.PersistentVolumeClaimSpec {
		sp := &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": "1Gi"}}}
		if f != nil {
			f(sp)
		}
		return sp
	}
	for _, tc := range []struct {
		name, kind string
		obj        Object
		want       string // "" valid, else a substring of the errors
	}{
		{"class", "StorageClass", &apiv1.StorageClass{Metadata: md(), Provisioner: LocalProvisioner}, ""},
		{"class without provisioner", "StorageClass", &apiv1.StorageClass{Metadata: md()}, "provisioner: required value"},
		{"class bad reclaim", "StorageClass", &apiv1.StorageClass{Metadata: md(), Provisioner: "p", ReclaimPolicy: s("Recycle")}, "reclaimPolicy"},
		{"class bad binding mode", "StorageClass", &apiv1.StorageClass{Metadata: md(), Provisioner: "p", VolumeBindingMode: s("Later")}, "volumeBindingMode"},
		{"volume", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(nil)}, ""},
		{"local volume", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) {
			s.HostPath, s.Local, s.NodeAffinity = nil, &apiv1.LocalVolumeSource{Path: "/mnt/d"}, onNode
		})}, ""},
		{"volume without size", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) { s.Capacity = nil })}, "spec.capacity[storage]: required value"},
		{"volume bad size", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) { s.Capacity["storage"] = "lots" })}, `spec.capacity[storage]: "lots" must be a quantity`},
		{"volume bad access mode", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) { s.AccessModes = []string{"ReadWriteSometimes"} })}, "spec.accessModes[0]"},
		{"volume without source", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) { s.HostPath = nil })}, "a volume source"},
		{"volume two sources", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) {
			s.Local, s.NodeAffinity = &apiv1.LocalVolumeSource{Path: "/mnt/d"}, onNode
		})}, "more than one volume source"},
		{"local volume without node", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) {
			s.HostPath, s.Local = nil, &apiv1.LocalVolumeSource{Path: "/mnt/d"}
		})}, "spec.nodeAffinity: required value"},
		{"volume relative path", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) { s.HostPath.Path = "srv" })}, "spec.hostPath.path"},
		{"volume bad reclaim", "PersistentVolume", &apiv1.PersistentVolume{Metadata: md(), Spec: pvSpec(func(s *apiv1.PersistentVolumeSpec) { s.PersistentVolumeReclaimPolicy = s2("Keep") })}, "spec.persistentVolumeReclaimPolicy"},
		{"claim", "PersistentVolumeClaim", &apiv1.PersistentVolumeClaim{Metadata: nsmd(), Spec: claimSpec(nil)}, ""},
		{"claim without size", "PersistentVolumeClaim", &apiv1.PersistentVolumeClaim{Metadata: nsmd(), Spec: claimSpec(func(s *apiv1.PersistentVolumeClaimSpec) { s.Resources = nil })}, "spec.resources.requests[storage]: required value"},
		{"claim without access modes", "PersistentVolumeClaim", &apiv1.PersistentVolumeClaim{Metadata: nsmd(), Spec: claimSpec(func(s *apiv1.PersistentVolumeClaimSpec) { s.AccessModes = nil })}, "spec.accessModes: required value"},
		{"claim bad class", "PersistentVolumeClaim", &apiv1.PersistentVolumeClaim{Metadata: nsmd(), Spec: claimSpec(func(s *apiv1.PersistentVolumeClaimSpec) { s.StorageClassName = s2("Fast_SSD") })}, "spec.storageClassName"},
	} {
		got := validateAs(t, tc.kind, tc.obj)
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: %s, want valid", tc.name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: %q, want an error naming %q", tc.name, got, tc.want)
		}
	}
}

func s2(v string) *string { return &v }

func TestClaimAccessModesImmutable(t *testing.T) {
	k, _ := NewRegistry().ForKind("PersistentVolumeClaim")
	old := &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Name: "c", Namespace: "default"},
		Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"}, VolumeName: "pv1", StorageClassName: s2("local")}}
	cur := &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Name: "c", Namespace: "default"},
		Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteMany"}, VolumeName: "pv2", StorageClassName: s2("fast")}}
	errs := k.ValidateUpdate(old, cur).Error()
	for _, want := range []string{"spec.accessModes", "spec.volumeName", "spec.storageClassName"} {
		if !strings.Contains(errs, want) {
			t.Errorf("update errors %q do not name %s", errs, want)
		}
	}
}

func TestBuiltinLocalStorageClass(t *testing.T) {
	var found bool
	for _, o := range BuiltinObjects() {
		if sc, ok := o.(*apiv1.StorageClass); ok && sc.GetMetadata().GetName() == LocalStorageClass {
			found = true
			if !IsDefaultStorageClass(sc) || sc.GetProvisioner() != LocalProvisioner || sc.GetVolumeBindingMode() != BindingWaitForFirstConsumer || sc.GetReclaimPolicy() != ReclaimDelete {
				t.Errorf("built-in class: %v", sc)
			}
			if errs := validateStorageClass(sc); len(errs) > 0 {
				t.Errorf("built-in class invalid: %v", errs)
			}
		}
	}
	if !found {
		t.Error("no built-in StorageClass local")
	}
}

// The beta storage class annotation wins over spec.storageClassName, as in
// Kubernetes; without either a claim has no class yet.
func TestClaimClass(t *testing.T) {
	fast, empty := "fast", ""
	for _, c := range []struct {
		ann   map[string]string
		class *string
		want  string
		set   bool
	}{
		{nil, nil, "", false},
		{nil, &fast, "fast", true},
		{nil, &empty, "", true},
		{map[string]string{BetaStorageClassAnnotation: "slow"}, nil, "slow", true},
		{map[string]string{BetaStorageClassAnnotation: "slow"}, &fast, "slow", true},
	} {
		pvc := &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Annotations: c.ann}, Spec: &apiv1.PersistentVolumeClaimSpec{StorageClassName: c.class}}
		if got, set := ClaimClass(pvc); got != c.want || set != c.set {
			t.Errorf("ClaimClass(annotations %v, class %v) = %q %v, want %q %v", c.ann, c.class, got, set, c.want, c.set)
		}
	}
	pv := &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Annotations: map[string]string{BetaStorageClassAnnotation: "slow"}}, Spec: &apiv1.PersistentVolumeSpec{StorageClassName: "fast"}}
	if got := VolumeClass(pv); got != "slow" {
		t.Errorf("VolumeClass = %q, want slow", got)
	}
}
