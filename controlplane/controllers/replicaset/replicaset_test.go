package replicaset_test

import (
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func i32(v int32) *int32 { return &v }

func template(labels map[string]string) *apiv1.PodTemplateSpec {
	return &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: labels},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
}

func newRS(name string, replicas int32) *apiv1.ReplicaSet {
	l := map[string]string{"app": name}
	return &apiv1.ReplicaSet{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &apiv1.ReplicaSetSpec{Replicas: i32(replicas), Selector: &apiv1.LabelSelector{MatchLabels: l}, Template: template(l)}}
}

func cfg(e *ctrltest.Env) ctrlkit.Config {
	c := ctrlkit.DefaultConfig(e.Client)
	c.Resync = time.Second
	return c
}

// TestReplicaSetAdoptsCreatesScalesAndReports: an orphan matching the
// selector is adopted (so only the missing pods are created), status counts
// follow pod readiness, and a scale-down deletes the not-ready pod first.
func TestReplicaSetAdoptsCreatesScalesAndReports(t *testing.T) {
	e := ctrltest.Start(t)
	kl := e.StartKubelet()
	ctx := e.Ctx(60 * time.Second)
	orphan := ctrlkit.PodFromTemplate(template(map[string]string{"app": "web"}), "default", "orphan", nil)
	if _, err := client.Create(ctx, e.Client, orphan); err != nil {
		t.Fatal(err)
	}
	e.Run(replicaset.NewReplicaSet(cfg(e)))
	rs, err := client.Create(ctx, e.Client, newRS("web", 3))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "3 ready replicas in status", func() bool {
		cur, err := client.Get[*apiv1.ReplicaSet](ctx, e.Client, "default", "web")
		st := cur.GetStatus()
		return err == nil && st.GetReplicas() == 3 && st.GetReadyReplicas() == 3 && st.GetAvailableReplicas() == 3 &&
			st.GetFullyLabeledReplicas() == 3 && st.GetObservedGeneration() == cur.GetMetadata().GetGeneration()
	})
	pods := e.ActivePods("default", "app=web")
	if len(pods) != 3 {
		t.Fatalf("%d pods, want 3", len(pods))
	}
	adopted := false
	for _, p := range pods {
		ref := ctrlkit.ControllerOf(p.GetMetadata())
		if ref == nil || ref.GetUid() != rs.GetMetadata().GetUid() {
			t.Fatalf("pod %s not controlled by the ReplicaSet: %v", p.GetMetadata().GetName(), p.GetMetadata().GetOwnerReferences())
		}
		if p.GetMetadata().GetName() == "orphan" {
			adopted = true
		}
	}
	if !adopted {
		t.Fatal("the matching orphan was not adopted")
	}

	// Make one pod not ready; scaling to 2 must delete exactly that one.
	var victim *apiv1.Pod
	for _, p := range pods {
		if p.GetMetadata().GetName() != "orphan" {
			victim = p
			break
		}
	}
	kl.Hold(victim.GetMetadata().GetName())
	if err := ctrltest.SetPhase(ctx, e.Client, victim, "Running", false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "readyReplicas 2", func() bool {
		cur, err := client.Get[*apiv1.ReplicaSet](ctx, e.Client, "default", "web")
		return err == nil && cur.GetStatus().GetReadyReplicas() == 2
	})
	if _, err := client.Patch[*apiv1.ReplicaSet](ctx, e.Client, "default", "web", []byte(`{"spec":{"replicas":2}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "2 pods", func() bool { return len(e.ActivePods("default", "app=web")) == 2 })
	for _, p := range e.ActivePods("default", "app=web") {
		if p.GetMetadata().GetName() == victim.GetMetadata().GetName() {
			t.Fatalf("scale-down kept the not-ready pod %s and deleted a ready one", victim.GetMetadata().GetName())
		}
	}

	// A pod whose labels stop matching is released and replaced.
	keep := e.ActivePods("default", "app=web")[0]
	if _, err := client.Patch[*apiv1.Pod](ctx, e.Client, "default", keep.GetMetadata().GetName(), []byte(`{"metadata":{"labels":{"app":"debug"}}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "released pod has no controller and a replacement exists", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, e.Client, "default", keep.GetMetadata().GetName())
		return err == nil && ctrlkit.ControllerOf(p.GetMetadata()) == nil && len(e.ActivePods("default", "app=web")) == 2
	})
}

// TestReplicationControllerExample: the shared example's RC shape (equality
// selector) keeps its replicas and replaces a deleted pod.
func TestReplicationControllerExample(t *testing.T) {
	e := ctrltest.Start(t)
	e.StartKubelet()
	ctx := e.Ctx(60 * time.Second)
	e.Run(replicaset.NewReplicationController(cfg(e)))
	l := map[string]string{"name": "static-site"}
	rc := &apiv1.ReplicationController{Metadata: &apiv1.ObjectMeta{Name: "static-site", Namespace: "default"},
		Spec: &apiv1.ReplicationControllerSpec{Replicas: i32(6), Selector: l, Template: template(l)}}
	if _, err := client.Create(ctx, e.Client, rc); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "6 ready", func() bool {
		cur, err := client.Get[*apiv1.ReplicationController](ctx, e.Client, "default", "static-site")
		return err == nil && cur.GetStatus().GetReadyReplicas() == 6
	})
	pods := e.ActivePods("default", "name=static-site")
	gone := pods[0].GetMetadata().GetName()
	if _, _, err := e.Client.Delete(ctx, "Pod", "default", gone, client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "6 pods again", func() bool {
		ps := e.ActivePods("default", "name=static-site")
		return len(ps) == 6
	})
	if n := len(e.Pods("default", "name=static-site")); n != 6 {
		t.Fatalf("%d pods exist, want exactly 6 (no over-creation)", n)
	}
}

// TestReplicaSetUnderQuota: a ResourceQuota of 2 pods stops the third
// create; the ReplicaSet says why (ReplicaFailure) and the quota's status
// counts the 2; raising the quota lets the third pod in and clears it.
func TestReplicaSetUnderQuota(t *testing.T) {
	e := ctrltest.Start(t)
	e.StartKubelet()
	ctx := e.Ctx(60 * time.Second)
	q := &apiv1.ResourceQuota{Metadata: &apiv1.ObjectMeta{Name: "pods", Namespace: "default"},
		Spec: &apiv1.ResourceQuotaSpec{Hard: map[string]string{"pods": "2"}}}
	if _, err := client.Create(ctx, e.Client, q); err != nil {
		t.Fatal(err)
	}
	e.Run(replicaset.NewReplicaSet(cfg(e)))
	if _, err := client.Create(ctx, e.Client, newRS("web", 3)); err != nil {
		t.Fatal(err)
	}
	failure := func() *apiv1.ReplicaCondition {
		cur, err := client.Get[*apiv1.ReplicaSet](ctx, e.Client, "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cur.GetStatus().GetConditions() {
			if c.GetType() == "ReplicaFailure" {
				return c
			}
		}
		return nil
	}
	testutil.WaitFor(t, 20*time.Second, "ReplicaFailure naming the quota, 2 pods, quota used 2", func() bool {
		c := failure()
		cur, err := client.Get[*apiv1.ResourceQuota](ctx, e.Client, "default", "pods")
		return c != nil && strings.Contains(c.GetMessage(), "quota") && len(e.ActivePods("default", "app=web")) == 2 &&
			err == nil && cur.GetStatus().GetUsed()["pods"] == "2"
	})
	if _, err := client.Patch[*apiv1.ResourceQuota](ctx, e.Client, "default", "pods", []byte(`{"spec":{"hard":{"pods":"5"}}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "third pod once the quota allows, condition cleared", func() bool {
		return len(e.ActivePods("default", "app=web")) == 3 && failure() == nil
	})
}
