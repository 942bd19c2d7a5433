package volumebinding

import (
	"slices"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// LocalVolumeDirAnnotation on a Node is the directory its agent keeps
// provisioned local volumes in (one subdirectory per volume).
const LocalVolumeDirAnnotation = "skiff.io/local-volume-dir"

// DefaultLocalVolumeDir is the volume directory of an agent with the
// default --data-dir, used for a Node that does not say.
const DefaultLocalVolumeDir = "/var/lib/skiff/agent/volumes"

// ProvisionedByAnnotation on a volume names the provisioner that made it
// (Kubernetes' name).
const ProvisionedByAnnotation = "pv.kubernetes.io/provisioned-by"

// HostnameLabel is the node label provisioned volumes' node affinity uses.
const HostnameLabel = "kubernetes.io/hostname"

// Request is a claim's requested size ("storage"), zero if unparsable.
func Request(c *apiv1.PersistentVolumeClaim) kinds.Quantity {
	q, _ := kinds.ParseQuantity(c.GetSpec().GetResources().GetRequests()["storage"])
	return q
}

// Capacity is a volume's size, zero if unparsable.
func Capacity(pv *apiv1.PersistentVolume) kinds.Quantity {
	q, _ := kinds.ParseQuantity(pv.GetSpec().GetCapacity()["storage"])
	return q
}

// Fits reports whether volume pv can serve claim c of class: same class,
// enough capacity, every access mode the claim asks for, the claim's label
// selector, and not bound or reserved for another claim.
func Fits(pv *apiv1.PersistentVolume, c *apiv1.PersistentVolumeClaim, class string) bool {
	s := pv.GetSpec()
	if pv.GetMetadata().GetDeletionTimestamp() != "" || kinds.VolumeClass(pv) != class {
		return false
	}
	if ref := s.GetClaimRef(); ref != nil {
		md := c.GetMetadata()
		if ref.GetNamespace() != md.GetNamespace() || ref.GetName() != md.GetName() ||
			(ref.GetUid() != "" && ref.GetUid() != md.GetUid()) {
			return false
		}
	} else if ph := pv.GetStatus().GetPhase(); ph != "" && ph != kinds.VolumeAvailable && ph != kinds.VolumePending {
		return false
	}
	for _, m := range c.GetSpec().GetAccessModes() {
		if !slices.Contains(s.GetAccessModes(), m) {
			return false
		}
	}
	if sel := c.GetSpec().GetSelector(); sel != nil && !matchesSelector(sel, pv.GetMetadata().GetLabels()) {
		return false
	}
	return Capacity(pv).Cmp(Request(c)) >= 0
}

// BestVolume is the volume claim c of class binds to: one reserved for it
// (claimRef) if it fits, else the smallest fitting one (ties by name, so
// every leader picks the same); nil if none fits.
func BestVolume(c *apiv1.PersistentVolumeClaim, class string, volumes []*apiv1.PersistentVolume) *apiv1.PersistentVolume {
	var best *apiv1.PersistentVolume
	for _, pv := range volumes {
		if !Fits(pv, c, class) {
			continue
		}
		if pv.GetSpec().GetClaimRef() != nil {
			return pv // reserved for this claim
		}
		if best == nil {
			best = pv
			continue
		}
		switch d := Capacity(pv).Cmp(Capacity(best)); {
		case d < 0, d == 0 && pv.GetMetadata().GetName() < best.GetMetadata().GetName():
			best = pv
		}
	}
	return best
}

// DefaultClass is the name of the default StorageClass, "" if none; of
// several, the newest wins, as in Kubernetes.
func DefaultClass(classes []*apiv1.StorageClass) string {
	var best *apiv1.StorageClass
	for _, sc := range classes {
		if !kinds.IsDefaultStorageClass(sc) {
			continue
		}
		if best == nil || sc.GetMetadata().GetCreationTimestamp() > best.GetMetadata().GetCreationTimestamp() ||
			(sc.GetMetadata().GetCreationTimestamp() == best.GetMetadata().GetCreationTimestamp() && sc.GetMetadata().GetName() < best.GetMetadata().GetName()) {
			best = sc
		}
	}
	return best.GetMetadata().GetName()
}

func matchesSelector(sel *apiv1.LabelSelector, labels map[string]string) bool {
	for k, v := range sel.GetMatchLabels() {
		if labels[k] != v {
			return false
		}
	}
	for _, r := range sel.GetMatchExpressions() {
		v, has := labels[r.GetKey()]
		in := slices.Contains(r.GetValues(), v)
		switch r.GetOperator() {
		case "In":
			if !has || !in {
				return false
			}
		case "NotIn":
			if has && in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}
