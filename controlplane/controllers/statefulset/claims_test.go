package statefulset_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/statefulset"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestVolumeClaimTemplatesOnHollowNodes: a StatefulSet with a
// volumeClaimTemplate (and a volumeMount of it, which a pod without the
// claim's volume would be refused for) gets one claim per ordinal,
// www-web-N, each provisioned on its pod's node; a deleted pod's
// replacement mounts the same claim and lands on the same node; scaling
// down and deleting the set leave the claims.
func TestVolumeClaimTemplatesOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replicas := int32(2)
	set := &apiv1.StatefulSet{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: &apiv1.StatefulSetSpec{Replicas: &replicas, ServiceName: "nginx",
			Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "nginx", Image: "nginx",
					VolumeMounts: []*apiv1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}}}}}},
			VolumeClaimTemplates: []*apiv1.PersistentVolumeClaim{{Metadata: &apiv1.ObjectMeta{Name: "www"},
				Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
					Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": "1Gi"}}}}}}}
	kinds.SetTypeMeta(set, "apps/v1", "StatefulSet")
	if _, err := client.Create(ctx, cl, set); err != nil {
		t.Fatal(err)
	}
	podNode := map[string]string{}
	testutil.WaitFor(t, time.Minute, "pods web-0 and web-1 running with claims bound on their nodes", func() bool {
		for ord := range 2 {
			name := "web-" + string(rune('0'+ord))
			p, err := client.Get[*apiv1.Pod](ctx, cl, "default", name)
			if err != nil || p.GetStatus().GetPhase() != "Running" {
				return false
			}
			claimName := statefulset.ClaimName("www", "web", ord)
			var vol *apiv1.Volume
			for _, v := range p.GetSpec().GetVolumes() {
				if v.GetName() == "www" {
					vol = v
				}
			}
			if vol.GetPersistentVolumeClaim().GetClaimName() != claimName {
				t.Fatalf("pod %s volume www = %v, want claim %s", name, vol, claimName)
			}
			pvc, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", claimName)
			if err != nil || pvc.GetStatus().GetPhase() != kinds.ClaimBound {
				return false
			}
			if got := pvc.GetMetadata().GetAnnotations()[kinds.SelectedNodeAnnotation]; got != p.GetSpec().GetNodeName() {
				t.Fatalf("claim %s selected node %q, its pod is on %q", claimName, got, p.GetSpec().GetNodeName())
			}
			if len(pvc.GetMetadata().GetOwnerReferences()) != 0 {
				t.Fatalf("claim %s has owners %v: it must outlive its pod", claimName, pvc.GetMetadata().GetOwnerReferences())
			}
			podNode[name] = p.GetSpec().GetNodeName()
		}
		return true
	})
	old, err := client.Get[*apiv1.Pod](ctx, cl, "default", "web-0")
	if err != nil {
		t.Fatal(err)
	}
	claim0, _ := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", "www-web-0")
	if _, _, err := cl.Delete(ctx, "Pod", "default", "web-0", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "web-0 replaced on the node of its volume", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "web-0")
		return err == nil && p.GetMetadata().GetUid() != old.GetMetadata().GetUid() && p.GetStatus().GetPhase() == "Running" &&
			p.GetSpec().GetNodeName() == podNode["web-0"]
	})
	again, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", "www-web-0")
	if err != nil || again.GetMetadata().GetUid() != claim0.GetMetadata().GetUid() || again.GetSpec().GetVolumeName() != claim0.GetSpec().GetVolumeName() {
		t.Fatalf("claim www-web-0 after the pod's replacement: %v %v (was uid %s volume %s)", again, err, claim0.GetMetadata().GetUid(), claim0.GetSpec().GetVolumeName())
	}
	if _, _, err := cl.Delete(ctx, "StatefulSet", "default", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "pods of web gone", func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=nginx"})
		return err == nil && len(pods) == 0
	})
	for _, name := range []string{"www-web-0", "www-web-1"} {
		if c, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", name); err != nil || c.GetStatus().GetPhase() != kinds.ClaimBound {
			t.Errorf("claim %s after the set's deletion: %v %v, want it kept and Bound", name, c.GetStatus().GetPhase(), err)
		}
	}
}

// TestClaimRetentionPolicyOnHollowNodes: persistentVolumeClaimRetentionPolicy
// whenScaled Delete removes the claims of the ordinals scaled away (once
// their pods are gone) and keeps the others; whenDeleted Delete removes
// the rest with the set. A bad policy value is refused naming the field.
func TestClaimRetentionPolicyOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 2})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replicas := int32(3)
	set := &apiv1.StatefulSet{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "db"},
		Spec: &apiv1.StatefulSetSpec{Replicas: &replicas, ServiceName: "db", PodManagementPolicy: "Parallel",
			PersistentVolumeClaimRetentionPolicy: &apiv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Delete", WhenScaled: "Delete"},
			Selector:                             &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "db", Image: "db",
					VolumeMounts: []*apiv1.VolumeMount{{Name: "data", MountPath: "/data"}}}}}},
			VolumeClaimTemplates: []*apiv1.PersistentVolumeClaim{{Metadata: &apiv1.ObjectMeta{Name: "data"},
				Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
					Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": "1Gi"}}}}}}}
	kinds.SetTypeMeta(set, "apps/v1", "StatefulSet")

	bad := proto.Clone(set).(*apiv1.StatefulSet)
	bad.Metadata.Name = "bad"
	bad.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Archive"
	if _, err := client.Create(ctx, cl, bad); err == nil || !strings.Contains(err.Error(), "spec.persistentVolumeClaimRetentionPolicy.whenScaled") || !strings.Contains(err.Error(), "Archive") {
		t.Errorf("whenScaled Archive: %v, want an error naming the field and value", err)
	}

	created, err := client.Create(ctx, cl, set)
	if err != nil {
		t.Fatal(err)
	}
	claim := func(ord int) *apiv1.PersistentVolumeClaim {
		pvc, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", statefulset.ClaimName("data", "db", ord))
		if err != nil && !client.IsNotFound(err) {
			t.Fatal(err)
		}
		return pvc
	}
	ownedBy := func(pvc *apiv1.PersistentVolumeClaim, uid string) bool {
		for _, r := range pvc.GetMetadata().GetOwnerReferences() {
			if r.GetUid() == uid {
				return true
			}
		}
		return false
	}
	testutil.WaitFor(t, time.Minute, "three pods running, each claim Bound and owned by the set", func() bool {
		for ord := range 3 {
			p, err := client.Get[*apiv1.Pod](ctx, cl, "default", fmt.Sprintf("db-%d", ord))
			pvc := claim(ord)
			if err != nil || p.GetStatus().GetPhase() != "Running" || pvc.GetStatus().GetPhase() != kinds.ClaimBound || !ownedBy(pvc, created.GetMetadata().GetUid()) {
				return false
			}
		}
		return true
	})
	pod2, err := client.Get[*apiv1.Pod](ctx, cl, "default", "db-2")
	if err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	cur, err := client.Get[*apiv1.StatefulSet](ctx, cl, "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Replicas = &one
	if _, err := client.Update(ctx, cl, cur); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "claims of ordinals 1 and 2 deleted with their pods (whenScaled Delete)", func() bool {
		return claim(1) == nil && claim(2) == nil
	})
	if _, err := client.Get[*apiv1.Pod](ctx, cl, "default", "db-2"); !client.IsNotFound(err) {
		t.Errorf("claim of db-2 gone while its pod %s is still there: %v", pod2.GetMetadata().GetUid(), err)
	}
	if pvc := claim(0); pvc == nil || !ownedBy(pvc, created.GetMetadata().GetUid()) {
		t.Fatalf("claim of ordinal 0 after the scale-down: %v, want kept, owned by the set", pvc.GetMetadata())
	}
	if _, _, err := cl.Delete(ctx, "StatefulSet", "default", "db", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "claim of ordinal 0 deleted with the set (whenDeleted Delete)", func() bool { return claim(0) == nil })
}
