package volumeprotection_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestInUseProtection runs this loop alone on the real control plane
// (Raft, API): a claim gets kubernetes.io/pvc-protection and a deleted
// claim stays while a pod names it, even one not scheduled yet, until the
// pod is gone; a volume gets kubernetes.io/pv-protection and a deleted
// volume stays while its status says Bound, and goes once it does not.
func TestInUseProtection(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"volumeprotection"}})
	cl := c.Client(t)
	ctx := context.Background()
	pvc := &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "data"},
		Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": "1Gi"}}}}
	kinds.SetTypeMeta(pvc, "v1", "PersistentVolumeClaim")
	created, err := client.Create(ctx, cl, pvc)
	if err != nil {
		t.Fatal(err)
	}
	// The API's StorageObjectInUseProtection admission, before any loop.
	if !slices.Equal(created.GetMetadata().GetFinalizers(), []string{kinds.PVCProtectionFinalizer}) {
		t.Errorf("created claim finalizers %v, want [%s] from admission", created.GetMetadata().GetFinalizers(), kinds.PVCProtectionFinalizer)
	}
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "user"},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}},
			Volumes: []*apiv1.Volume{{Name: "d", PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}
	kinds.SetTypeMeta(pod, "v1", "Pod")
	if _, err := client.Create(ctx, cl, pod); err != nil {
		t.Fatal(err)
	}
	getClaim := func() *apiv1.PersistentVolumeClaim {
		got, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", "data")
		if err != nil && !client.IsNotFound(err) {
			t.Fatal(err)
		}
		return got
	}
	testutil.WaitFor(t, 10*time.Second, "claim data protected", func() bool {
		return slices.Contains(getClaim().GetMetadata().GetFinalizers(), kinds.PVCProtectionFinalizer)
	})
	if _, _, err := cl.Delete(ctx, "PersistentVolumeClaim", "default", "data", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	marked := getClaim()
	if marked == nil || marked.GetMetadata().GetDeletionTimestamp() == "" {
		t.Fatalf("claim used by a pending pod after delete: %v, want kept, marked for deletion", marked.GetMetadata())
	}
	// Give the loop every chance to (wrongly) let it go: a pod event
	// requeues the claim, and the pod stays.
	if _, err := client.Patch[*apiv1.Pod](ctx, cl, "default", "user", []byte(`{"metadata":{"labels":{"poke":"1"}}}`)); err != nil {
		t.Fatal(err)
	}
	// A negative check: the claim stays for the whole while.
	if testutil.Eventually(500*time.Millisecond, func() bool { return getClaim() == nil }) {
		t.Fatal("claim removed while a pod that has not terminated names it")
	}
	if _, _, err := cl.Delete(ctx, "Pod", "default", "user", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "claim data gone with its last pod", func() bool { return getClaim() == nil })

	pv := &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: "disk"},
		Spec: &apiv1.PersistentVolumeSpec{Capacity: map[string]string{"storage": "1Gi"}, AccessModes: []string{"ReadWriteOnce"},
			HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/disk"}}}
	kinds.SetTypeMeta(pv, "v1", "PersistentVolume")
	if created, err := client.Create(ctx, cl, pv); err != nil || !slices.Equal(created.GetMetadata().GetFinalizers(), []string{kinds.PVProtectionFinalizer}) {
		t.Fatalf("create volume: %v, finalizers %v, want [%s] from admission", err, created.GetMetadata().GetFinalizers(), kinds.PVProtectionFinalizer)
	}
	getPV := func() *apiv1.PersistentVolume {
		got, err := client.Get[*apiv1.PersistentVolume](ctx, cl, "", "disk")
		if err != nil && !client.IsNotFound(err) {
			t.Fatal(err)
		}
		return got
	}
	testutil.WaitFor(t, 10*time.Second, "volume disk protected", func() bool {
		return slices.Contains(getPV().GetMetadata().GetFinalizers(), kinds.PVProtectionFinalizer)
	})
	bound := getPV()
	bound.Status = &apiv1.PersistentVolumeStatus{Phase: kinds.VolumeBound}
	if _, err := client.UpdateStatus(ctx, cl, bound); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Delete(ctx, "PersistentVolume", "", "disk", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A negative check, as above: kept and marked for the whole while.
	var got *apiv1.PersistentVolume
	if testutil.Eventually(500*time.Millisecond, func() bool {
		got = getPV()
		return got == nil || got.GetMetadata().GetDeletionTimestamp() == ""
	}) {
		t.Fatalf("Bound volume after delete: %v, want kept, marked for deletion", got.GetMetadata())
	}
	released := getPV()
	released.Status = &apiv1.PersistentVolumeStatus{Phase: kinds.VolumeReleased}
	if _, err := client.UpdateStatus(ctx, cl, released); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "Released volume disk gone", func() bool { return getPV() == nil })
}
