package kinds

import (
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Phases of PersistentVolumes and PersistentVolumeClaims.
const (
	VolumePending   = "Pending"
	VolumeAvailable = "Available"
	VolumeBound     = "Bound"
	VolumeReleased  = "Released"
	VolumeFailed    = "Failed"
	ClaimPending    = "Pending"
	ClaimBound      = "Bound"
	ClaimLost       = "Lost"
)

// Finalizers of persistent storage, Kubernetes' names.
const (
	// PVCProtectionFinalizer holds a claim that a pod not yet terminated
	// uses until no such pod is left (the volumeprotection controller).
	PVCProtectionFinalizer = "kubernetes.io/pvc-protection"
	// PVProtectionFinalizer holds a volume while it is Bound.
	PVProtectionFinalizer = "kubernetes.io/pv-protection"
	// ProvisionerFinalizer holds a volume the built-in local provisioner
	// made until the agent of its node has removed its directory (reclaim
	// policy Delete): only that node owns the disk.
	ProvisionerFinalizer = "external-provisioner.volume.kubernetes.io/finalizer"
)

// LocalVolumeNodeLabel on a volume the built-in local provisioner made
// names its node: that node's agent lists and watches the volumes
// selected by it (and only those), to remove their directories when they
// are deleted.
const LocalVolumeNodeLabel = "skiff.io/local-volume-node"

// AccessModes a volume or claim may name.
var AccessModes = []string{"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"}

var persistentVolumeKind = define(Kind{
	Name: "PersistentVolume", Plural: "persistentvolumes", Singular: "persistentvolume", ShortNames: []string{"pv"},
	APIVersions: []string{"v1"}, Retired: retiredCore,
	newObject: func() Object { return &apiv1.PersistentVolume{} },
	columns: []Column{{Name: "NAME"}, {Name: "CAPACITY"}, {Name: "ACCESS MODES"}, {Name: "RECLAIM POLICY"},
		{Name: "STATUS"}, {Name: "CLAIM"}, {Name: "STORAGECLASS"}, {Name: "AGE"}},
}, func(pv *apiv1.PersistentVolume) {
	if pv.Spec == nil {
		return
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == nil {
		pv.Spec.PersistentVolumeReclaimPolicy = ptr(ReclaimRetain)
	}
	if pv.Spec.VolumeMode == nil {
		pv.Spec.VolumeMode = ptr("Filesystem")
	}
	if pv.Status == nil {
		pv.Status = &apiv1.PersistentVolumeStatus{}
	}
	if pv.Status.Phase == "" {
		pv.Status.Phase = VolumePending
	}
}, validatePersistentVolume, func(pv *apiv1.PersistentVolume, now time.Time) []string {
	s := pv.GetSpec()
	claim := ""
	if r := s.GetClaimRef(); r != nil {
		claim = r.GetNamespace() + "/" + r.GetName()
	}
	return []string{pv.GetMetadata().GetName(), s.GetCapacity()["storage"], accessModesShort(s.GetAccessModes()),
		s.GetPersistentVolumeReclaimPolicy(), pv.GetStatus().GetPhase(), claim, s.GetStorageClassName(),
		age(pv.GetMetadata().GetCreationTimestamp(), now)}
})

func validatePersistentVolume(pv *apiv1.PersistentVolume) FieldErrors {
	s := pv.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	var errs FieldErrors
	if q, ok := s.GetCapacity()["storage"]; !ok {
		errs = append(errs, Required("spec.capacity[storage]", "the volume's size, e.g. 10Gi"))
	} else {
		errs = append(errs, validateQuantity("spec.capacity[storage]", q)...)
	}
	for _, name := range sortedKeys(s.GetCapacity()) {
		if name != "storage" {
			errs = append(errs, NotSupported(key("spec.capacity", name), name, []string{"storage"}))
		}
	}
	errs = append(errs, validateAccessModes("spec.accessModes", s.GetAccessModes())...)
	if s.PersistentVolumeReclaimPolicy != nil {
		errs = append(errs, oneOf("spec.persistentVolumeReclaimPolicy", s.GetPersistentVolumeReclaimPolicy(), ReclaimDelete, ReclaimRetain, ReclaimRecycle)...)
	}
	if s.VolumeMode != nil {
		errs = append(errs, oneOf("spec.volumeMode", s.GetVolumeMode(), "Filesystem", "Block")...)
	}
	if c := s.GetStorageClassName(); c != "" {
		errs = append(errs, check("spec.storageClassName", c, IsDNS1123Subdomain(c))...)
	}
	if r := s.GetClaimRef(); r != nil {
		if r.GetName() == "" {
			errs = append(errs, Required("spec.claimRef.name", ""))
		}
		if r.GetNamespace() == "" {
			errs = append(errs, Required("spec.claimRef.namespace", ""))
		}
	}
	n := 0
	if h := s.GetHostPath(); h != nil {
		n++
		if !strings.HasPrefix(h.GetPath(), "/") {
			errs = append(errs, Invalid("spec.hostPath.path", h.GetPath(), "must be an absolute path"))
		}
	}
	if l := s.GetLocal(); l != nil {
		n++
		if !strings.HasPrefix(l.GetPath(), "/") {
			errs = append(errs, Invalid("spec.local.path", l.GetPath(), "must be an absolute path"))
		}
		if len(s.GetNodeAffinity().GetRequired().GetNodeSelectorTerms()) == 0 {
			errs = append(errs, Required("spec.nodeAffinity", "a local volume must say which node it is on"))
		}
	}
	if f := s.GetNfs(); f != nil {
		n++
		if f.GetServer() == "" {
			errs = append(errs, Required("spec.nfs.server", ""))
		}
		if !strings.HasPrefix(f.GetPath(), "/") {
			errs = append(errs, Invalid("spec.nfs.path", f.GetPath(), "must be an absolute path"))
		}
	}
	switch {
	case n == 0:
		errs = append(errs, Required("spec", "a volume source: one of hostPath, local, nfs"))
	case n > 1:
		errs = append(errs, Forbidden("spec", "may not specify more than one volume source"))
	}
	if na := s.GetNodeAffinity(); na != nil {
		if na.GetRequired() == nil {
			errs = append(errs, Required("spec.nodeAffinity.required", ""))
		}
		for i, t := range na.GetRequired().GetNodeSelectorTerms() {
			errs = append(errs, validateNodeSelectorTerm(t, idx("spec.nodeAffinity.required.nodeSelectorTerms", i))...)
		}
	}
	if p := pv.GetStatus().GetPhase(); p != "" {
		errs = append(errs, oneOf("status.phase", p, VolumePending, VolumeAvailable, VolumeBound, VolumeReleased, VolumeFailed)...)
	}
	return errs
}

func validateAccessModes(path string, modes []string) FieldErrors {
	if len(modes) == 0 {
		return FieldErrors{Required(path, "at least one of "+strings.Join(AccessModes, ", "))}
	}
	var errs FieldErrors
	for i, m := range modes {
		errs = append(errs, oneOf(idx(path, i), m, AccessModes...)...)
	}
	return errs
}

// accessModesShort prints access modes as kubectl does (RWO,ROX,RWX,RWOP).
func accessModesShort(modes []string) string {
	short := map[string]string{"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
	out := make([]string, 0, len(modes))
	for _, m := range modes {
		out = append(out, short[m])
	}
	return strings.Join(out, ",")
}
