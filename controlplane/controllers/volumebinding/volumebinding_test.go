package volumebinding_test

import (
	"context"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/volumebinding"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// wait is far below the controllers' resync period: every step must follow
// from an event, not from a periodic retry.
const wait = 10 * time.Second

func staticPV(name, class, size string) *apiv1.PersistentVolume {
	pv := &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: name},
		Spec: &apiv1.PersistentVolumeSpec{StorageClassName: class, Capacity: map[string]string{"storage": size},
			AccessModes: []string{"ReadWriteOnce"}, HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/" + name}}}
	kinds.SetTypeMeta(pv, "v1", "PersistentVolume")
	return pv
}

func claim(name string, class *string, size string) *apiv1.PersistentVolumeClaim {
	c := &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name},
		Spec: &apiv1.PersistentVolumeClaimSpec{StorageClassName: class, AccessModes: []string{"ReadWriteOnce"},
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": size}}}}
	kinds.SetTypeMeta(c, "v1", "PersistentVolumeClaim")
	return c
}

func podWithClaim(name, claimName string) *apiv1.Pod {
	p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": name}},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox",
			VolumeMounts: []*apiv1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []*apiv1.Volume{{Name: "data", PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}}}}}
	kinds.SetTypeMeta(p, "v1", "Pod")
	return p
}

func str(s string) *string { return &s }

// waitFor is testutil.WaitFor that logs how long each step took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	testutil.WaitFor(t, wait, what, cond)
	t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
}

func getClaim(t *testing.T, cl *client.Client, name string) *apiv1.PersistentVolumeClaim {
	t.Helper()
	c, err := client.Get[*apiv1.PersistentVolumeClaim](context.Background(), cl, "default", name)
	if err != nil && !client.IsNotFound(err) {
		t.Fatal(err)
	}
	return c
}

func getPV(cl *client.Client, name string) (*apiv1.PersistentVolume, error) {
	return client.Get[*apiv1.PersistentVolume](context.Background(), cl, "", name)
}

func getPod(cl *client.Client, name string) *apiv1.Pod {
	p, _ := client.Get[*apiv1.Pod](context.Background(), cl, "default", name)
	return p
}

func mustCreate[T client.Object](t *testing.T, cl *client.Client, obj T) T {
	t.Helper()
	out, err := client.Create(context.Background(), cl, obj)
	if err != nil {
		t.Fatalf("create %s: %v", obj.GetMetadata().GetName(), err)
	}
	return out
}

// TestBindingAndProvisioningOnHollowNodes runs the real control plane
// (Raft, API, scheduler and every controller) with hollow nodes: static
// volumes bind to the smallest fitting claim, a pod with an unbound
// Immediate claim waits until a volume appears, the default class
// provisions a local volume on the node the pod was scheduled to (and the
// pod's replacement follows it there), and reclaim Delete / Retain.
func TestBindingAndProvisioningOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
	cl := c.Client(t)
	ctx := context.Background()

	// The built-in default class exists from the start.
	waitFor(t, "StorageClass local", func() bool {
		sc, err := client.Get[*apiv1.StorageClass](ctx, cl, "", kinds.LocalStorageClass)
		return err == nil && kinds.IsDefaultStorageClass(sc) && sc.GetVolumeBindingMode() == kinds.BindingWaitForFirstConsumer
	})

	// Static binding: the smallest fitting volume of the class.
	for _, pv := range []*apiv1.PersistentVolume{staticPV("manual-5g", "manual", "5Gi"), staticPV("manual-1g", "manual", "1Gi"),
		staticPV("manual-2g", "manual", "2Gi"), staticPV("other-1g", "other", "1Gi")} {
		mustCreate(t, cl, pv)
	}
	mustCreate(t, cl, claim("db", str("manual"), "1500Mi"))
	waitFor(t, "claim db bound to manual-2g", func() bool {
		c := getClaim(t, cl, "db")
		return c.GetSpec().GetVolumeName() == "manual-2g" && c.GetStatus().GetPhase() == kinds.ClaimBound &&
			c.GetStatus().GetCapacity()["storage"] == "2Gi"
	})
	waitFor(t, "manual-2g Bound, manual-1g Available", func() bool {
		a, err1 := getPV(cl, "manual-2g")
		b, err2 := getPV(cl, "manual-1g")
		return err1 == nil && err2 == nil && a.GetStatus().GetPhase() == kinds.VolumeBound &&
			a.GetSpec().GetClaimRef().GetName() == "db" && b.GetStatus().GetPhase() == kinds.VolumeAvailable
	})

	// An Immediate class without a fitting volume: the pod waits.
	sc := &apiv1.StorageClass{Metadata: &apiv1.ObjectMeta{Name: "static"}, Provisioner: kinds.NoProvisioner}
	kinds.SetTypeMeta(sc, "storage.k8s.io/v1", "StorageClass")
	mustCreate(t, cl, sc)
	mustCreate(t, cl, claim("later", str("static"), "1Gi"))
	mustCreate(t, cl, podWithClaim("waiter", "later"))
	waitFor(t, "pod waiter unschedulable for its unbound claim", func() bool {
		p := getPod(cl, "waiter")
		for _, cond := range p.GetStatus().GetConditions() {
			if cond.GetType() == "PodScheduled" && cond.GetStatus() == "False" && strings.Contains(cond.GetMessage(), "unbound immediate PersistentVolumeClaims") {
				return p.GetSpec().GetNodeName() == ""
			}
		}
		return false
	})
	// A volume on one node only: the claim binds, the pod goes there.
	pinned := staticPV("static-1g", "static", "1Gi")
	pinned.Spec.NodeAffinity = &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{
		MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"hollow-2"}}}}}}}
	mustCreate(t, cl, pinned)
	waitFor(t, "pod waiter scheduled to hollow-2, the volume's node", func() bool {
		return getPod(cl, "waiter").GetSpec().GetNodeName() == "hollow-2"
	})

	// Provisioning: a claim of the default class (none named) gets a
	// local volume on the node its pod is scheduled to.
	mustCreate(t, cl, claim("scratch", nil, "3Gi"))
	waitFor(t, "claim scratch given the default class", func() bool {
		return getClaim(t, cl, "scratch").GetSpec().GetStorageClassName() == kinds.LocalStorageClass
	})
	if ph := getClaim(t, cl, "scratch").GetStatus().GetPhase(); ph != kinds.ClaimPending {
		t.Fatalf("claim scratch without a consumer is %s, want Pending (WaitForFirstConsumer)", ph)
	}
	mustCreate(t, cl, podWithClaim("user", "scratch"))
	var node string
	waitFor(t, "pod user scheduled", func() bool {
		node = getPod(cl, "user").GetSpec().GetNodeName()
		return node != ""
	})
	var scratch *apiv1.PersistentVolumeClaim
	waitFor(t, "claim scratch provisioned and bound on the pod's node", func() bool {
		scratch = getClaim(t, cl, "scratch")
		return scratch.GetMetadata().GetAnnotations()[kinds.SelectedNodeAnnotation] == node && scratch.GetStatus().GetPhase() == kinds.ClaimBound
	})
	pvName := scratch.GetSpec().GetVolumeName()
	pv, err := getPV(cl, pvName)
	if err != nil {
		t.Fatal(err)
	}
	if want := path.Join(volumebinding.DefaultLocalVolumeDir, pvName); pv.GetSpec().GetLocal().GetPath() != want {
		t.Errorf("provisioned volume path %q, want %q", pv.GetSpec().GetLocal().GetPath(), want)
	}
	if got := pv.GetSpec().GetNodeAffinity().GetRequired().GetNodeSelectorTerms()[0].GetMatchExpressions()[0].GetValues(); len(got) != 1 || got[0] != node {
		t.Errorf("provisioned volume node affinity %v, want [%s]", got, node)
	}
	if pv.GetSpec().GetPersistentVolumeReclaimPolicy() != kinds.ReclaimDelete || pv.GetSpec().GetCapacity()["storage"] != "3Gi" {
		t.Errorf("provisioned volume: reclaim %s capacity %s", pv.GetSpec().GetPersistentVolumeReclaimPolicy(), pv.GetSpec().GetCapacity()["storage"])
	}
	// A second pod using the claim can only go to the volume's node.
	for i := range 4 {
		name := "user-" + string(rune('a'+i))
		mustCreate(t, cl, podWithClaim(name, "scratch"))
		waitFor(t, name+" scheduled", func() bool { return getPod(cl, name).GetSpec().GetNodeName() != "" })
		if got := getPod(cl, name).GetSpec().GetNodeName(); got != node {
			t.Fatalf("%s went to %s, its volume is on %s", name, got, node)
		}
	}

	// In-use protection: every claim and volume carries its finalizer.
	waitFor(t, "protection finalizers on claim scratch and volume "+pvName, func() bool {
		pv, err := getPV(cl, pvName)
		return err == nil && slices.Contains(getClaim(t, cl, "scratch").GetMetadata().GetFinalizers(), kinds.PVCProtectionFinalizer) &&
			slices.Contains(pv.GetMetadata().GetFinalizers(), kinds.PVProtectionFinalizer) &&
			slices.Contains(pv.GetMetadata().GetFinalizers(), kinds.ProvisionerFinalizer) &&
			pv.GetMetadata().GetAnnotations()[kinds.SelectedNodeAnnotation] == node
	})
	// A claim used by pods that have not terminated stays while they do.
	if _, _, err := cl.Delete(ctx, "PersistentVolumeClaim", "default", "scratch", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	users := []string{"user", "user-a", "user-b", "user-c", "user-d"}
	for i, name := range users {
		// Deleting one and the volume is still held by the others.
		c := getClaim(t, cl, "scratch")
		if c == nil || c.GetMetadata().GetDeletionTimestamp() == "" || c.GetStatus().GetPhase() != kinds.ClaimBound {
			t.Fatalf("claim scratch with %d pods using it: %v, want it kept, Bound and marked for deletion", len(users)-i, c.GetMetadata())
		}
		if pv, err := getPV(cl, pvName); err != nil || pv.GetMetadata().GetDeletionTimestamp() != "" || pv.GetStatus().GetPhase() != kinds.VolumeBound {
			t.Fatalf("volume %s while its claim is in use: %v %v", pvName, pv.GetMetadata(), err)
		}
		if i == 1 {
			// A terminated pod no longer holds it: the hollow node
			// reports user-a Succeeded (its phase set by hand here).
			p := getPod(cl, name)
			p.Status.Phase = "Succeeded"
			if _, err := client.UpdateStatus(ctx, cl, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, _, err := cl.Delete(ctx, "Pod", "default", name, client.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod "+name+" gone", func() bool { return getPod(cl, name) == nil })
	}
	// Reclaim Delete: the claim goes, its volume is Released and deleted,
	// held for its node's agent to remove the directory.
	waitFor(t, "claim scratch gone once no pod uses it", func() bool { return getClaim(t, cl, "scratch") == nil })
	waitFor(t, "volume "+pvName+" Released, deleted, waiting for its node", func() bool {
		pv, err := getPV(cl, pvName)
		return err == nil && pv.GetStatus().GetPhase() == kinds.VolumeReleased && pv.GetMetadata().GetDeletionTimestamp() != "" &&
			slices.Equal(pv.GetMetadata().GetFinalizers(), []string{kinds.ProvisionerFinalizer})
	})
	// Its node goes (no agent left to clean up): the volume is let go.
	if _, _, err := cl.Delete(ctx, "Node", "", node, client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "volume "+pvName+" deleted once its node is gone", func() bool {
		_, err := getPV(cl, pvName)
		return client.IsNotFound(err)
	})
	// Reclaim Retain: the static volume stays, Released, and deleting it
	// then drops pv-protection (it is no longer Bound).
	if _, _, err := cl.Delete(ctx, "PersistentVolumeClaim", "default", "db", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "manual-2g Released", func() bool {
		pv, err := getPV(cl, "manual-2g")
		return err == nil && pv.GetStatus().GetPhase() == kinds.VolumeReleased && pv.GetMetadata().GetDeletionTimestamp() == ""
	})
	// pv-protection: a Bound volume stays while bound.
	if _, _, err := cl.Delete(ctx, "PersistentVolume", "", "static-1g", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if pv, err := getPV(cl, "static-1g"); err != nil || pv.GetMetadata().GetDeletionTimestamp() == "" || pv.GetStatus().GetPhase() != kinds.VolumeBound {
		t.Fatalf("bound volume static-1g after delete: %v %v, want kept and Bound", pv.GetMetadata(), err)
	}
	if _, _, err := cl.Delete(ctx, "PersistentVolume", "", "manual-2g", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Released manual-2g deleted", func() bool {
		_, err := getPV(cl, "manual-2g")
		return client.IsNotFound(err)
	})
	if _, _, err := cl.Delete(ctx, "Pod", "default", "waiter", client.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Delete(ctx, "PersistentVolumeClaim", "default", "later", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "static-1g deleted once its claim and the claim's pod are gone", func() bool {
		_, err := getPV(cl, "static-1g")
		return client.IsNotFound(err)
	})
}

func ptr[T any](v T) *T { return &v }

// TestBetaClassAndExternalProvisioner: a claim naming its class with the
// beta annotation volume.beta.kubernetes.io/storage-class (as the
// Kubernetes cassandra example does) is of that class, not given the
// default one; a class whose provisioner Skiff does not run leaves it
// Pending with Kubernetes' ExternalProvisioning event, and its pod
// unschedulable (the class binds Immediate).
func TestBetaClassAndExternalProvisioner(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 1, Loops: []string{"scheduler", "persistentvolume", "volumeprotection"}})
	cl := c.Client(t)
	ctx := context.Background()
	sc := &apiv1.StorageClass{Metadata: &apiv1.ObjectMeta{Name: "fast"}, Provisioner: "k8s.io/minikube-hostpath"}
	kinds.SetTypeMeta(sc, "storage.k8s.io/v1", "StorageClass")
	mustCreate(t, cl, sc)
	pvc := claim("cassandra-data", nil, "1Gi")
	pvc.Metadata.Annotations = map[string]string{kinds.BetaStorageClassAnnotation: "fast"}
	mustCreate(t, cl, pvc)
	mustCreate(t, cl, podWithClaim("cassandra-0", "cassandra-data"))
	waitFor(t, "ExternalProvisioning event on the claim", func() bool {
		evs, _, err := client.List[*apiv1.Event](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range evs {
			if e.GetReason() == "ExternalProvisioning" && e.GetInvolvedObject().GetName() == "cassandra-data" &&
				strings.Contains(e.GetMessage(), "k8s.io/minikube-hostpath") {
				return true
			}
		}
		return false
	})
	waitFor(t, "pod cassandra-0 unschedulable for its unbound claim", func() bool {
		for _, cond := range getPod(cl, "cassandra-0").GetStatus().GetConditions() {
			if cond.GetType() == "PodScheduled" && cond.GetStatus() == "False" && strings.Contains(cond.GetMessage(), "unbound immediate PersistentVolumeClaims") {
				return true
			}
		}
		return false
	})
	got := getClaim(t, cl, "cassandra-data")
	if got.GetSpec().StorageClassName != nil || got.GetStatus().GetPhase() != kinds.ClaimPending {
		t.Fatalf("claim: class %v phase %s, want no storageClassName given (the annotation names fast) and Pending", got.GetSpec().StorageClassName, got.GetStatus().GetPhase())
	}
}
