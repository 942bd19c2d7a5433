package scheduler

import (
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// volumeState is what the VolumeBinding filter reads: the scheduler's
// caches of claims, volumes and storage classes.
type volumeState struct {
	claims, volumes, classes *ctrlkit.Cache
}

// watchVolumes caches claims, volumes and classes for the VolumeBinding
// filter, added to the scheduler's filters; a change to any of them
// retries the unschedulable pods (a claim got bound, a volume appeared).
func (s *Scheduler) watchVolumes() {
	retry := client.EventHandler{
		OnAdd:    func(client.Object) { s.t.flushUnschedulable() },
		OnUpdate: func(_, _ client.Object) { s.t.flushUnschedulable() },
	}
	s.volumes = &volumeState{
		claims:  s.Watch("PersistentVolumeClaim", retry),
		volumes: s.Watch("PersistentVolume", retry),
		classes: s.Watch("StorageClass", retry),
	}
	s.cfg.Filters = append(append([]Filter(nil), s.cfg.Filters...),
		Filter{Name: "VolumeBinding", Relevant: hasClaims, Check: s.volumes.check})
}

func hasClaims(p *PodInfo) bool {
	for _, v := range p.Pod.GetSpec().GetVolumes() {
		if v.GetPersistentVolumeClaim() != nil {
			return true
		}
	}
	return false
}

// check is kube-scheduler's VolumeBinding filter: a bound claim's volume
// must be usable from the node (its node affinity); an unbound claim of a
// WaitForFirstConsumer class may go to any node (or the one already
// selected for it), the provisioner then makes its volume there; an
// unbound claim of an Immediate class makes the pod wait.
func (v *volumeState) check(p *PodInfo, n *NodeInfo) string {
	ns := p.Pod.GetMetadata().GetNamespace()
	for _, vol := range p.Pod.GetSpec().GetVolumes() {
		src := vol.GetPersistentVolumeClaim()
		if src == nil {
			continue
		}
		o, ok := v.claims.Get(ns, src.GetClaimName())
		if !ok {
			return `persistentvolumeclaim "` + src.GetClaimName() + `" not found`
		}
		claim := o.(*apiv1.PersistentVolumeClaim)
		if claim.GetMetadata().GetDeletionTimestamp() != "" {
			return `persistentvolumeclaim "` + src.GetClaimName() + `" is being deleted`
		}
		if vn := claim.GetSpec().GetVolumeName(); vn != "" {
			po, ok := v.volumes.Get("", vn)
			if !ok {
				return `pod has unbound immediate PersistentVolumeClaims (volume "` + vn + `" not found)`
			}
			if !VolumeFitsNode(po.(*apiv1.PersistentVolume), n.Node) {
				return "node(s) had volume node affinity conflict"
			}
			continue
		}
		class, set := kinds.ClaimClass(claim)
		if !set {
			return "pod has unbound immediate PersistentVolumeClaims" // the default class is not given yet
		}
		co, ok := v.classes.Get("", class)
		if !ok || co.(*apiv1.StorageClass).GetVolumeBindingMode() != kinds.BindingWaitForFirstConsumer {
			return "pod has unbound immediate PersistentVolumeClaims"
		}
		if sel := claim.GetMetadata().GetAnnotations()[kinds.SelectedNodeAnnotation]; sel != "" && sel != n.Name() {
			return "node(s) didn't match the node selected for the pod's volume"
		}
	}
	return ""
}

// VolumeFitsNode reports whether pv's node affinity admits node (a volume
// without node affinity is usable everywhere).
func VolumeFitsNode(pv *apiv1.PersistentVolume, node *apiv1.Node) bool {
	required := pv.GetSpec().GetNodeAffinity().GetRequired()
	if required == nil {
		return true
	}
	for _, t := range required.GetNodeSelectorTerms() {
		if apiv1.NodeSelectorTermMatches(t, node) {
			return true
		}
	}
	return false
}
