package volumebinding

import (
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func pv(name, class, size string, modes ...string) *apiv1.PersistentVolume {
	return &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: name},
		Spec: &apiv1.PersistentVolumeSpec{StorageClassName: class, Capacity: map[string]string{"storage": size}, AccessModes: modes,
			HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/" + name}},
		Status: &apiv1.PersistentVolumeStatus{Phase: "Available"}}
}

func pvc(name, size string, modes ...string) *apiv1.PersistentVolumeClaim {
	return &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: name, Uid: "uid-" + name},
		Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: modes,
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": size}}}}
}

func TestBestVolume(t *testing.T) {
	reserved := pv("reserved", "fast", "100Gi", "ReadWriteOnce")
	reserved.Spec.ClaimRef = &apiv1.ObjectReference{Namespace: "shop", Name: "other"}
	taken := pv("taken", "fast", "2Gi", "ReadWriteOnce")
	taken.Spec.ClaimRef = &apiv1.ObjectReference{Namespace: "shop", Name: "x", Uid: "uid-x"}
	taken.Status.Phase = "Bound"
	released := pv("released", "fast", "2Gi", "ReadWriteOnce")
	released.Status.Phase = "Released"
	labelled := pv("labelled", "fast", "50Gi", "ReadWriteOnce")
	labelled.Metadata.Labels = map[string]string{"tier": "gold"}
	vols := []*apiv1.PersistentVolume{
		pv("big", "fast", "10Gi", "ReadWriteOnce"),
		pv("small", "fast", "1Gi", "ReadWriteOnce"),
		pv("mid-b", "fast", "5Gi", "ReadWriteOnce", "ReadOnlyMany"),
		pv("mid-a", "fast", "5Gi", "ReadWriteOnce"),
		pv("rwx", "fast", "20Gi", "ReadWriteMany"),
		pv("slow", "slow", "3Gi", "ReadWriteOnce"),
		reserved, taken, released, labelled,
	}
	forOther := pvc("other", "90Gi", "ReadWriteOnce")
	withSel := pvc("sel", "1Gi", "ReadWriteOnce")
	withSel.Spec.Selector = &apiv1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}
	for _, tc := range []struct {
		name  string
		claim *apiv1.PersistentVolumeClaim
		class string
		want  string
	}{
		{"smallest that fits", pvc("a", "2Gi", "ReadWriteOnce"), "fast", "mid-a"},
		{"exact size fits", pvc("a", "1Gi", "ReadWriteOnce"), "fast", "small"},
		{"1000Mi fits in 1Gi", pvc("a", "1000Mi", "ReadWriteOnce"), "fast", "small"},
		{"access modes must all be offered", pvc("a", "1Gi", "ReadWriteOnce", "ReadOnlyMany"), "fast", "mid-b"},
		{"only the RWX volume has RWX", pvc("a", "1Gi", "ReadWriteMany"), "fast", "rwx"},
		{"class must match", pvc("a", "1Gi", "ReadWriteOnce"), "slow", "slow"},
		{"no volume of the class", pvc("a", "1Gi", "ReadWriteOnce"), "", ""},
		{"too big for any free volume", pvc("a", "60Gi", "ReadWriteOnce"), "fast", ""},
		{"reserved volume goes to its claim", forOther, "fast", "reserved"},
		{"selector narrows", withSel, "fast", "labelled"},
	} {
		got := BestVolume(tc.claim, tc.class, vols)
		if name := got.GetMetadata().GetName(); name != tc.want {
			t.Errorf("%s: BestVolume = %q, want %q", tc.name, name, tc.want)
		}
	}
}

func TestDefaultClass(t *testing.T) {
	sc := func(name, created string, def bool) *apiv1.StorageClass {
		s := &apiv1.StorageClass{Metadata: &apiv1.ObjectMeta{Name: name, CreationTimestamp: created}}
		if def {
			s.Metadata.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
		}
		return s
	}
	if got := DefaultClass([]*apiv1.StorageClass{sc("a", "2026-01-01T00:00:00Z", false)}); got != "" {
		t.Errorf("no default: got %q", got)
	}
	got := DefaultClass([]*apiv1.StorageClass{sc("local", "2026-01-01T00:00:00Z", true), sc("fast", "2026-02-01T00:00:00Z", true), sc("x", "2026-03-01T00:00:00Z", false)})
	if got != "fast" {
		t.Errorf("two defaults: got %q, want the newest (fast)", got)
	}
}
