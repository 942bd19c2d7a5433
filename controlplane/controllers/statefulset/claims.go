package statefulset

import (
	"context"
	"fmt"
	"maps"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
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
// pod template already defines under that name wins). The claims carry no
// owner reference: they outlive the pod and, with the default retention
// policy, the set.
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
