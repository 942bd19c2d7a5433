package statefulset

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// ClaimName is the claim a StatefulSet's pod of ordinal ord gets from the
// volume claim template named template: <template>-<set>-<ordinal>, as in
// Kubernetes, so a replacement pod finds the claim (and the data) of the
// pod it replaces.
func ClaimName(template, set string, ord int) string {
	return fmt.Sprintf("%s-%s-%d", template, set, ord)
}

// withClaims makes the claims of ordinal ord that do not exist yet and
// adds them to pod as volumes named after their templates (a volume the
// pod template already defines under that name wins). With the default
// retention policy (Retain) the claims carry no owner reference: they
// outlive the pod and the set; whenDeleted Delete makes the set their owner
// from the start (claimOwners keeps the references after that).
func (c *Controller) withClaims(ctx context.Context, set *apiv1.StatefulSet, pod *apiv1.Pod, ord int) error {
	md := set.GetMetadata()
	for _, tmpl := range set.GetSpec().GetVolumeClaimTemplates() {
		tname := tmpl.GetMetadata().GetName()
		name := ClaimName(tname, md.GetName(), ord)
		claim := &apiv1.PersistentVolumeClaim{
			Metadata: &apiv1.ObjectMeta{Namespace: md.GetNamespace(), Name: name,
				Labels:      maps.Clone(set.GetSpec().GetSelector().GetMatchLabels()),
				Annotations: maps.Clone(tmpl.GetMetadata().GetAnnotations())},
			Spec: codec.Clone(tmpl.GetSpec()),
		}
		if claim.Metadata.Labels == nil {
			claim.Metadata.Labels = map[string]string{}
		}
		maps.Copy(claim.Metadata.Labels, tmpl.GetMetadata().GetLabels())
		if retention(set).GetWhenDeleted() == policyDelete {
			claim.Metadata.OwnerReferences = []*apiv1.OwnerReference{ownerRef(set, "apps/v1", "StatefulSet")}
		}
		kinds.SetTypeMeta(claim, "v1", "PersistentVolumeClaim")
		if _, err := client.Create(ctx, c.Client(), claim); err != nil && !client.IsAlreadyExists(err) {
			c.event(ctx, set, client.EventWarning, "FailedCreate", "create Claim "+name+" for Pod "+pod.GetMetadata().GetName()+" failed: "+client.Reason(err))
			return fmt.Errorf("create claim %s: %w", name, err)
		}
		if hasVolume(pod.GetSpec(), tname) {
			continue
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, &apiv1.Volume{Name: tname,
			PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: name}})
	}
	return nil
}

func hasVolume(spec *apiv1.PodSpec, name string) bool {
	for _, v := range spec.GetVolumes() {
		if v.GetName() == name {
			return true
		}
	}
	return false
}

const policyDelete = "Delete"

func retention(set *apiv1.StatefulSet) *apiv1.StatefulSetPersistentVolumeClaimRetentionPolicy {
	return set.GetSpec().GetPersistentVolumeClaimRetentionPolicy()
}

// ownerRef is a plain (non-controller) owner reference: the garbage
// collector deletes the claim once every owner is gone.
func ownerRef(o client.Object, apiVersion, kind string) *apiv1.OwnerReference {
	md := o.GetMetadata()
	return &apiv1.OwnerReference{ApiVersion: apiVersion, Kind: kind, Name: md.GetName(), Uid: md.GetUid()}
}

// claimOwners makes the owner references of the claims of pod (ordinal
// ord) say what persistentVolumeClaimRetentionPolicy asks, as Kubernetes'
// StatefulSet controller does: whenDeleted Delete makes the set an owner
// (the garbage collector deletes the claims with the set); whenScaled
// Delete makes a condemned pod (an ordinal scaled away) the owner instead
// (the claims go with the pod); Retain removes those references. The
// claims' in-use protection keeps them until the pod is gone.
func (c *Controller) claimOwners(ctx context.Context, set *apiv1.StatefulSet, pod *apiv1.Pod, ord int, condemned bool) error {
	md := set.GetMetadata()
	rp := retention(set)
	wantSet := rp.GetWhenDeleted() == policyDelete && !(condemned && rp.GetWhenScaled() == policyDelete)
	wantPod := condemned && rp.GetWhenScaled() == policyDelete
	for _, tmpl := range set.GetSpec().GetVolumeClaimTemplates() {
		name := ClaimName(tmpl.GetMetadata().GetName(), md.GetName(), ord)
		o, ok := c.claims.Get(md.GetNamespace(), name)
		if !ok || o.GetMetadata().GetDeletionTimestamp() != "" {
			continue
		}
		refs := o.GetMetadata().GetOwnerReferences()
		next := slices.DeleteFunc(slices.Clone(refs), func(r *apiv1.OwnerReference) bool {
			return r.GetUid() == md.GetUid() || r.GetUid() == pod.GetMetadata().GetUid()
		})
		if wantSet {
			next = append(next, ownerRef(set, "apps/v1", "StatefulSet"))
		}
		if wantPod {
			next = append(next, ownerRef(pod, "v1", "Pod"))
		}
		if slices.EqualFunc(refs, next, func(a, b *apiv1.OwnerReference) bool { return a.GetUid() == b.GetUid() }) {
			continue
		}
		if err := ctrlkit.SetOwnerRefs(ctx, c.Client(), c.claims, o, next); err != nil && !client.IsNotFound(err) {
			return fmt.Errorf("set the owners of claim %s (retention policy whenDeleted=%s whenScaled=%s): %w", name, rp.GetWhenDeleted(), rp.GetWhenScaled(), err)
		}
	}
	return nil
}
