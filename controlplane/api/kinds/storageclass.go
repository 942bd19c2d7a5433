package kinds

import (
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Storage names Kubernetes and Skiff give meaning to.
const (
	// DefaultStorageClassAnnotation marks the class claims without
	// spec.storageClassName get (value "true").
	DefaultStorageClassAnnotation = "storageclass.kubernetes.io/is-default-class"
	// LocalStorageClass is the built-in default class; LocalProvisioner
	// makes its volumes: a directory on the node the claim's first pod is
	// scheduled to.
	LocalStorageClass = "local"
	LocalProvisioner  = "skiff.io/local"
	// NoProvisioner is the provisioner of classes with static volumes only.
	NoProvisioner = "kubernetes.io/no-provisioner"
	// Volume binding modes.
	BindingImmediate            = "Immediate"
	BindingWaitForFirstConsumer = "WaitForFirstConsumer"
	// Reclaim policies.
	ReclaimDelete  = "Delete"
	ReclaimRetain  = "Retain"
	ReclaimRecycle = "Recycle"
)

var storageClassKind = define(Kind{
	Name: "StorageClass", Plural: "storageclasses", Singular: "storageclass", ShortNames: []string{"sc"},
	Group: "storage.k8s.io", APIVersions: []string{"storage.k8s.io/v1"},
	Retired:   map[string]string{"storage.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	newObject: func() Object { return &apiv1.StorageClass{} },
	columns: []Column{{Name: "NAME"}, {Name: "PROVISIONER"}, {Name: "RECLAIMPOLICY"}, {Name: "VOLUMEBINDINGMODE"},
		{Name: "ALLOWVOLUMEEXPANSION"}, {Name: "AGE"}},
}, func(sc *apiv1.StorageClass) {
	if sc.ReclaimPolicy == nil {
		sc.ReclaimPolicy = ptr(ReclaimDelete)
	}
	if sc.VolumeBindingMode == nil {
		sc.VolumeBindingMode = ptr(BindingImmediate)
	}
}, validateStorageClass, func(sc *apiv1.StorageClass, now time.Time) []string {
	name := sc.GetMetadata().GetName()
	if IsDefaultStorageClass(sc) {
		name += " (default)"
	}
	return []string{name, sc.GetProvisioner(), sc.GetReclaimPolicy(), sc.GetVolumeBindingMode(),
		strconv.FormatBool(sc.GetAllowVolumeExpansion()), age(sc.GetMetadata().GetCreationTimestamp(), now)}
})

func init() {
	onUpdate(storageClassKind, func(old, cur *apiv1.StorageClass) FieldErrors {
		var errs FieldErrors
		if old.GetProvisioner() != cur.GetProvisioner() {
			errs = append(errs, Invalid("provisioner", cur.GetProvisioner(), "field is immutable"))
		}
		if old.GetReclaimPolicy() != cur.GetReclaimPolicy() {
			errs = append(errs, Invalid("reclaimPolicy", cur.GetReclaimPolicy(), "field is immutable"))
		}
		if old.GetVolumeBindingMode() != cur.GetVolumeBindingMode() {
			errs = append(errs, Invalid("volumeBindingMode", cur.GetVolumeBindingMode(), "field is immutable"))
		}
		return errs
	})
	registerBuiltinObjects(BuiltinStorageClasses)
}

// IsDefaultStorageClass reports whether sc carries the default-class annotation.
func IsDefaultStorageClass(sc *apiv1.StorageClass) bool {
	return strings.EqualFold(sc.GetMetadata().GetAnnotations()[DefaultStorageClassAnnotation], "true")
}

func validateStorageClass(sc *apiv1.StorageClass) FieldErrors {
	var errs FieldErrors
	if sc.GetProvisioner() == "" {
		errs = append(errs, Required("provisioner", "names who makes volumes of this class (e.g. "+LocalProvisioner+" or "+NoProvisioner+")"))
	} else if len(sc.GetProvisioner()) > 253 {
		errs = append(errs, Invalid("provisioner", sc.GetProvisioner(), "must be no more than 253 characters"))
	}
	if sc.ReclaimPolicy != nil {
		errs = append(errs, oneOf("reclaimPolicy", sc.GetReclaimPolicy(), ReclaimDelete, ReclaimRetain)...)
	}
	if sc.VolumeBindingMode != nil {
		errs = append(errs, oneOf("volumeBindingMode", sc.GetVolumeBindingMode(), BindingImmediate, BindingWaitForFirstConsumer)...)
	}
	for i, t := range sc.GetAllowedTopologies() {
		for j, r := range t.GetMatchLabelExpressions() {
			p := idx(idx("allowedTopologies", i)+".matchLabelExpressions", j)
			errs = append(errs, check(p+".key", r.GetKey(), IsQualifiedName(r.GetKey()))...)
			if len(r.GetValues()) == 0 {
				errs = append(errs, Required(p+".values", "at least one value"))
			}
		}
	}
	return errs
}

// BuiltinStorageClasses is the class every cluster has from the start: the
// default class "local", whose volumes the built-in provisioner makes on the
// node a claim's first pod is scheduled to.
func BuiltinStorageClasses() []Object {
	sc := &apiv1.StorageClass{
		Metadata:          &apiv1.ObjectMeta{Name: LocalStorageClass, Annotations: map[string]string{DefaultStorageClassAnnotation: "true"}},
		Provisioner:       LocalProvisioner,
		ReclaimPolicy:     ptr(ReclaimDelete),
		VolumeBindingMode: ptr(BindingWaitForFirstConsumer),
	}
	SetTypeMeta(sc, "storage.k8s.io/v1", "StorageClass")
	return []Object{sc}
}
