package kinds

import (
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// SelectedNodeAnnotation on a claim names the node the scheduler placed its
// first pod on, for a WaitForFirstConsumer class: the provisioner makes the
// volume there (Kubernetes' name).
const SelectedNodeAnnotation = "volume.kubernetes.io/selected-node"

// BetaStorageClassAnnotation is the storage class annotation that came
// before spec.storageClassName; Kubernetes still honours it on claims and
// volumes, and manifests still use it.
const BetaStorageClassAnnotation = "volume.beta.kubernetes.io/storage-class"

// ClaimClass is the storage class a claim asks for, as Kubernetes reads
// it: the beta annotation if present, else spec.storageClassName; set is
// false when neither is (the default class is then given to it).
func ClaimClass(c *apiv1.PersistentVolumeClaim) (class string, set bool) {
	if a, ok := c.GetMetadata().GetAnnotations()[BetaStorageClassAnnotation]; ok {
		return a, true
	}
	if c.GetSpec().StorageClassName != nil {
		return c.GetSpec().GetStorageClassName(), true
	}
	return "", false
}

// VolumeClass is a volume's storage class: the beta annotation if present,
// else spec.storageClassName.
func VolumeClass(pv *apiv1.PersistentVolume) string {
	if a, ok := pv.GetMetadata().GetAnnotations()[BetaStorageClassAnnotation]; ok {
		return a
	}
	return pv.GetSpec().GetStorageClassName()
}

var persistentVolumeClaimKind = define(Kind{
	Name: "PersistentVolumeClaim", Plural: "persistentvolumeclaims", Singular: "persistentvolumeclaim", ShortNames: []string{"pvc"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.PersistentVolumeClaim{} },
	columns: []Column{{Name: "NAME"}, {Name: "STATUS"}, {Name: "VOLUME"}, {Name: "CAPACITY"}, {Name: "ACCESS MODES"},
		{Name: "STORAGECLASS"}, {Name: "AGE"}},
}, func(pvc *apiv1.PersistentVolumeClaim) {
	if pvc.Spec == nil {
		return
	}
	if pvc.Spec.VolumeMode == nil {
		pvc.Spec.VolumeMode = ptr("Filesystem")
	}
	if pvc.Status == nil {
		pvc.Status = &apiv1.PersistentVolumeClaimStatus{}
	}
	if pvc.Status.Phase == "" {
		pvc.Status.Phase = ClaimPending
	}
}, func(pvc *apiv1.PersistentVolumeClaim) FieldErrors {
	return ValidateClaimSpec(pvc.GetSpec(), "spec")
}, func(pvc *apiv1.PersistentVolumeClaim, now time.Time) []string {
	st := pvc.GetStatus()
	return []string{pvc.GetMetadata().GetName(), st.GetPhase(), pvc.GetSpec().GetVolumeName(), st.GetCapacity()["storage"],
		accessModesShort(st.GetAccessModes()), pvc.GetSpec().GetStorageClassName(), age(pvc.GetMetadata().GetCreationTimestamp(), now)}
})

func init() {
	onUpdate(persistentVolumeClaimKind, func(old, cur *apiv1.PersistentVolumeClaim) FieldErrors {
		var errs FieldErrors
		o, c := old.GetSpec(), cur.GetSpec()
		if o.GetStorageClassName() != c.GetStorageClassName() && o.StorageClassName != nil {
			errs = append(errs, Invalid("spec.storageClassName", c.GetStorageClassName(), "field is immutable once set"))
		}
		if o.GetVolumeName() != "" && o.GetVolumeName() != c.GetVolumeName() {
			errs = append(errs, Invalid("spec.volumeName", c.GetVolumeName(), "field is immutable once bound"))
		}
		if !equalStrings(o.GetAccessModes(), c.GetAccessModes()) {
			errs = append(errs, Invalid("spec.accessModes", c.GetAccessModes(), "field is immutable"))
		}
		return errs
	})
}

// ValidateClaimSpec checks a claim's spec (also of a StatefulSet's
// volumeClaimTemplates) at path.
func ValidateClaimSpec(s *apiv1.PersistentVolumeClaimSpec, path string) FieldErrors {
	if s == nil {
		return FieldErrors{Required(path, "")}
	}
	errs := validateAccessModes(path+".accessModes", s.GetAccessModes())
	req := s.GetResources().GetRequests()
	if q, ok := req["storage"]; !ok {
		errs = append(errs, Required(path+".resources.requests[storage]", "the size asked for, e.g. 1Gi"))
	} else {
		errs = append(errs, validateQuantity(path+".resources.requests[storage]", q)...)
	}
	if c := s.GetStorageClassName(); c != "" {
		errs = append(errs, check(path+".storageClassName", c, IsDNS1123Subdomain(c))...)
	}
	if s.VolumeMode != nil {
		errs = append(errs, oneOf(path+".volumeMode", s.GetVolumeMode(), "Filesystem", "Block")...)
	}
	return append(errs, validateLabelSelector(s.GetSelector(), path+".selector")...)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
